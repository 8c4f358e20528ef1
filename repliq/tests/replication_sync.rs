//! Synchronous replication embedded in the producer (the seed's `configure_replication`) to two
//! `repliqd` replicas: after `enqueue` returns, the message is in both replicas' files; with a
//! replica down, `enqueue` returns a `Replication` error (never a false acknowledgement) while
//! the message stays written locally; a restarted replica catches up. Replicas are read-only.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use repliq::{JournalQueue, PersistentQueue, QueueError, ReplicatedQueue, ReplicationMode};

#[repliq::message(name = "test.Order")]
#[derive(Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    qty: u32,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Replica {
    root: PathBuf,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Replica {
    fn new(dir: &Path, name: &str) -> Replica {
        let root = dir.join(name);
        let port = free_port();
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "replication:\n  mode: synchronous\n  discovery:\n    method: static\n    peers: []\n\
                 queue:\n  capacity: 1000\n  persistence:\n    path: {}\n\
                 server:\n  grpc_listen: 127.0.0.1:{port}\n  http_listen: 127.0.0.1:0\n",
                root.display()
            ),
        )
        .unwrap();
        let mut r = Replica {
            root,
            config,
            port,
            child: None,
        };
        r.start(name);
        r
    }

    fn start(&mut self, name: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_repliqd"))
            .arg("--config")
            .arg(&self.config)
            .env("NODE_NAME", name)
            .env("REPLIQ_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("repliqd listening"), "{line:?}");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn holds(&self, seq: u64) -> bool {
        repliq::inspect(self.root.join("orders"))
            .ok()
            .and_then(|i| i.last_seq)
            .is_some_and(|last| last >= seq)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn synchronous_enqueue_returns_only_when_every_replica_holds_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Replica::new(dir.path(), "b");
    let c = Replica::new(dir.path(), "c");
    let primary_dir = dir.path().join("a").join("orders");
    let mut q = JournalQueue::<Order>::new(&primary_dir, 10_000).unwrap();

    // Bad configurations are refused with a clear error.
    let err = q
        .configure_replication("a", &["nowhere"], ReplicationMode::Synchronous)
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidConfig(m) if m.contains("`nowhere`")),
        "{err}"
    );
    let err = q
        .configure_replication("a", &[], ReplicationMode::Synchronous)
        .unwrap_err();
    assert!(matches!(err, QueueError::InvalidConfig(_)));

    let b_addr = format!("b=127.0.0.1:{}", b.port);
    let c_addr = format!("c=127.0.0.1:{}", c.port);
    q.configure_replication("a", &[&b_addr, &c_addr], ReplicationMode::Synchronous)
        .unwrap();
    for id in 0..200 {
        let seq = q.enqueue(&Order { id, qty: 1 }).unwrap();
        assert!(
            b.holds(seq) && c.holds(seq),
            "message {seq} acknowledged before both replicas hold it"
        );
    }

    // A replica is read-only for local producers.
    let mut on_replica = JournalQueue::<Order>::open(b.root.join("orders")).unwrap();
    let err = on_replica.enqueue(&Order { id: 0, qty: 0 }).unwrap_err();
    assert!(
        matches!(&err, QueueError::Replication(m) if m.contains("read-only replica of a")),
        "{err}"
    );
    assert_eq!(on_replica.dequeue().unwrap(), Some(Order { id: 0, qty: 1 }));

    // One of the two required replicas down: no false acknowledgement.
    b.kill9();
    let err = q.enqueue(&Order { id: 200, qty: 1 }).unwrap_err();
    assert!(
        matches!(&err, QueueError::Replication(m) if m.contains("not acknowledged")),
        "{err}"
    );
    assert!(!b.holds(200));
    let local = repliq::inspect(&primary_dir).unwrap();
    assert_eq!(
        local.last_seq,
        Some(200),
        "the message stays written locally"
    );

    // The replica comes back, catches up, and acknowledgements flow again.
    b.start("b");
    let seq = q.enqueue(&Order { id: 201, qty: 1 }).unwrap();
    assert_eq!(seq, 201);
    assert!(b.holds(201) && c.holds(201));
}
