//! A remote durable consumer's cursor survives a failover (docs/REPLICATION.md, "Consumer
//! cursors"): against real `repliqd` processes, a consumer acknowledges records on the primary,
//! the primary's daemon is SIGKILLed and the replica promoted (`repliq promote`); a consumer of
//! the same name on the new primary starts at the replicated cursor, and nothing before it is
//! delivered again.

mod support;

use std::path::Path;
use std::time::Duration;

use repliq::JournalQueue;
use repliq::client::{ConsumerOptions, RemoteConsumer};
use support::{Daemon, Order, held, order, wait_until};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn addr(d: &Daemon) -> String {
    format!("127.0.0.1:{}", d.grpc_port)
}

/// Consumer `name`'s cursor in the queue at `dir`, from its meta file (`None` without one).
fn cursor(dir: &Path, name: &str) -> Option<u64> {
    repliq::inspect(dir)
        .ok()?
        .cursors
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.next_seq)
}

/// Connects, retrying while the node starts serving (bounded).
async fn connect(addr: &str) -> RemoteConsumer<Order> {
    let options = ConsumerOptions::default().ack_wait(Duration::from_secs(3600));
    for _ in 0..200 {
        match RemoteConsumer::<Order>::connect_with(addr, "orders", "billing", options.clone())
            .await
        {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the consumer did not connect to {addr}");
}

#[test]
fn a_remote_consumer_resumes_at_its_replicated_cursor_on_the_promoted_replica() {
    const ACKED: u64 = 20;
    const RECORDS: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "asynchronous");
    for n in &nodes {
        let mut config = std::fs::read_to_string(&n.config).unwrap();
        assert!(config.ends_with("shutdown_grace_ms: 2000\n"), "{config}");
        config.push_str("  clients: true\n");
        std::fs::write(&n.config, config).unwrap();
    }
    let mut b = nodes.pop().unwrap();
    let mut a = nodes.pop().unwrap();
    a.start();
    b.start();
    let (qa, qb) = (a.root.join("orders"), b.root.join("orders"));
    let mut q = JournalQueue::<Order>::new(&qa, 1_000_000).unwrap();
    for id in 0..RECORDS {
        q.enqueue(&order(id)).unwrap();
    }
    wait_until("b holds every record", || held(&qb) == RECORDS);
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&addr(&a)).await;
        for want in 0..ACKED {
            let d = c
                .next_timeout(Duration::from_secs(20))
                .await
                .unwrap()
                .expect("a delivery within 20 s");
            assert_eq!((d.seq, d.message), (want, order(want)));
        }
        assert_eq!(c.ack(ACKED - 1).await.unwrap(), ACKED);
    });
    assert_eq!(
        cursor(&qa, "billing"),
        Some(ACKED),
        "committed on the primary"
    );
    // A cursor moves to the replicas with the next frame: one more record.
    q.enqueue(&order(RECORDS)).unwrap();
    drop(q);
    wait_until("b holds the new record and the cursor", || {
        held(&qb) == RECORDS + 1 && cursor(&qb, "billing") == Some(ACKED)
    });
    a.kill9();
    support::promote(&qb);
    let delivered = rt.block_on(async {
        let mut c = connect(&addr(&b)).await;
        assert_eq!(
            c.cursor(),
            ACKED,
            "the durable cursor survived the failover"
        );
        let mut delivered = Vec::new();
        while let Some(d) = c.next_timeout(Duration::from_secs(3)).await.unwrap() {
            assert_eq!(d.message, order(d.seq));
            delivered.push(d.seq);
        }
        assert_eq!(c.ack(RECORDS).await.unwrap(), RECORDS + 1);
        delivered
    });
    assert_eq!(
        delivered,
        (ACKED..=RECORDS).collect::<Vec<_>>(),
        "the new primary delivers from the cursor on, nothing before it again"
    );
    assert_eq!(cursor(&qb, "billing"), Some(RECORDS + 1));
    b.kill9();
}
