//! Failover: three `repliqd` in synchronous mode; the primary's daemon is killed with SIGKILL
//! under load; a replica is promoted; every acknowledged message is on it; the other replica
//! follows the new primary; the old primary, restarted, steps down, moves aside what it wrote
//! that was never acknowledged, and converges to the new primary's log.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repliq::replication::{ReplicationState, Role};
use repliq::{QueueError, QueueOptions};

#[repliq::message(name = "test.Payment")]
#[derive(Debug, Clone, PartialEq)]
struct Payment {
    id: u64,
    cents: i64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    name: &'static str,
    root: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_repliqd"))
            .arg("--config")
            .arg(&self.config)
            .env("NODE_NAME", self.name)
            .env("REPLIQ_LOG", "error")
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

    fn queue(&self) -> PathBuf {
        self.root.join("payments")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn cluster(dir: &Path) -> Vec<Node> {
    let names = ["a", "b", "c"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let root = dir.join(name);
            std::fs::create_dir_all(&root).unwrap();
            let peers: String = names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, n)| format!("      - name: {n}\n        address: 127.0.0.1:{}\n", ports[j]))
                .collect();
            let config = dir.join(format!("{name}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "replication:\n  mode: synchronous\n  discovery:\n    method: static\n    peers:\n{peers}\
                     queue:\n  capacity: 1000000\n  persistence:\n    path: {}\n\
                     server:\n  grpc_listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:0\n  shutdown_grace_ms: 1000\n",
                    root.display(),
                    ports[i]
                ),
            )
            .unwrap();
            Node {
                name,
                root,
                config,
                child: None,
            }
        })
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn held(dir: &Path) -> u64 {
    repliq::inspect(dir)
        .ok()
        .and_then(|i| i.last_seq)
        .map_or(0, |s| s + 1)
}

fn all_payments(dir: &Path) -> Vec<Payment> {
    let mut q = QueueOptions::new()
        .consumer("check")
        .open::<Payment>(dir)
        .unwrap();
    let mut out = Vec::new();
    while let Some(p) = q.dequeue().unwrap() {
        out.push(p);
    }
    q.remove_consumer("check");
    out
}

#[test]
fn promoted_replica_holds_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    for n in &mut nodes {
        n.start();
    }
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .create::<Payment>(nodes[0].queue())
        .unwrap();
    // Wait until a's daemon replicates the queue synchronously.
    wait_until("a to replicate synchronously", || {
        ReplicationState::load(&nodes[0].queue()).is_ok_and(|s| s.synchronous)
    });

    // Sync load; kill a's daemon half-way. Only `Ok` enqueues count as acknowledged.
    let mut acknowledged = Vec::new();
    for id in 0..3000u64 {
        if id == 1500 {
            nodes[0].kill9();
        }
        let p = Payment {
            id,
            cents: id as i64 * 7,
        };
        match q.enqueue(&p) {
            Ok(_) => acknowledged.push(p),
            Err(QueueError::Replication(_)) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        acknowledged.len() >= 1500,
        "{} acknowledged",
        acknowledged.len()
    );
    // One more local write that no replica gets: it must be moved aside later, not merged.
    let _ = q.enqueue(&Payment {
        id: 999_999,
        cents: 0,
    });
    drop(q);

    // Promote b.
    let state = ReplicationState::promote(&nodes[1].queue()).unwrap();
    assert_eq!(state.role, Role::Primary);
    assert_eq!(state.epoch, 2);
    let on_b = all_payments(&nodes[1].queue());
    assert!(
        on_b.len() >= acknowledged.len() && on_b[..acknowledged.len()] == acknowledged[..],
        "an acknowledged message is missing on the promoted replica"
    );
    let err = ReplicationState::promote(&nodes[1].queue()).unwrap_err();
    assert!(matches!(&err, QueueError::Replication(m) if m.contains("already the primary")));

    // New writes on b reach c (b's daemon picks up the promotion).
    let mut qb = QueueOptions::new()
        .open::<Payment>(nodes[1].queue())
        .unwrap();
    let base = held(&nodes[1].queue());
    for id in 0..100 {
        qb.enqueue(&Payment {
            id: 10_000 + id,
            cents: 1,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    wait_until("c to follow b", || held(&nodes[2].queue()) == base + 100);

    // The old primary comes back: it steps down, moves its unreplicated tail aside and follows b.
    nodes[0].start();
    wait_until("a to converge", || {
        held(&nodes[0].queue()) == base + 100
            && ReplicationState::load(&nodes[0].queue()).is_ok_and(|s| s.role == Role::Replica)
    });
    assert_eq!(
        all_payments(&nodes[0].queue()),
        all_payments(&nodes[1].queue())
    );
    let moved = nodes[0].queue().join("moved-aside");
    assert!(moved.exists(), "a's unacknowledged tail was moved aside");
}
