//! Synchronous replication embedded in the producer (the seed's `configure_replication`) to two
//! `repliqd` replicas: after `enqueue` returns, the message is in both replicas' files; with a
//! replica down, `enqueue` returns a `Replication` error (never a false acknowledgement) while
//! the message stays written locally; a restarted replica catches up. Replicas are read-only.

mod support;

use repliq::{
    JournalQueue, PersistentQueue, Queue, QueueError, ReplicatedQueue, ReplicatedQueueImpl,
    ReplicationError, ReplicationMode,
};
use support::{Daemon, free_port, held};

#[repliq::message(name = "test.Order")]
#[derive(Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    qty: u32,
}

#[test]
fn synchronous_enqueue_returns_only_when_every_replica_holds_the_message() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded primary "a" must be a peer of its replicas (they refuse strangers).
    let a_port = free_port();
    let mut b = Daemon::new(
        dir.path(),
        "b",
        "synchronous",
        &[("a", a_port)],
        free_port(),
    );
    let mut c = Daemon::new(
        dir.path(),
        "c",
        "synchronous",
        &[("a", a_port)],
        free_port(),
    );
    b.start();
    c.start();
    let holds = |d: &Daemon, seq: u64| held(&d.root.join("orders")) > seq;
    let primary_dir = dir.path().join("a").join("orders");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The seed's API: an async handle, replicated from this process.
    let mut q = ReplicatedQueueImpl::<Order>::new(&primary_dir, 10_000).unwrap();
    // A synchronous handle opened before replication was configured obeys it too.
    let mut early = JournalQueue::<Order>::open(&primary_dir).unwrap();

    // Bad configurations are refused with a clear error.
    let err = q
        .configure_replication("a", vec!["nowhere"], ReplicationMode::Synchronous)
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidConfig(m) if m.contains("`nowhere`")),
        "{err}"
    );
    let err = q
        .configure_replication("a", vec![], ReplicationMode::Synchronous)
        .unwrap_err();
    assert!(matches!(err, QueueError::InvalidConfig(_)));

    let (sb, sc) = (b.secondary(), c.secondary());
    q.configure_replication("a", vec![&sb, &sc], ReplicationMode::Synchronous)
        .unwrap();
    for id in 0..200 {
        let seq = if id % 2 == 0 {
            rt.block_on(q.enqueue_ref(&Order { id, qty: 1 })).unwrap()
        } else {
            early.enqueue(&Order { id, qty: 1 }).unwrap()
        };
        assert!(
            holds(&b, seq) && holds(&c, seq),
            "message {seq} acknowledged before both replicas hold it"
        );
    }

    // A replica is read-only for local producers.
    let mut on_replica = JournalQueue::<Order>::open(b.root.join("orders")).unwrap();
    let err = on_replica.enqueue(&Order { id: 0, qty: 0 }).unwrap_err();
    assert!(
        matches!(
            &err,
            QueueError::Replication(ReplicationError::ReadOnlyReplica { .. })
        ),
        "{err}"
    );
    assert_eq!(on_replica.dequeue().unwrap(), Some(Order { id: 0, qty: 1 }));

    // One of the two required replicas down: no false acknowledgement.
    b.kill9();
    let err = rt
        .block_on(q.enqueue(Order { id: 200, qty: 1 }))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            QueueError::Replication(ReplicationError::AckTimeout { seq: 200, .. })
        ),
        "{err}"
    );
    assert!(!holds(&b, 200));
    assert_eq!(held(&primary_dir), 201, "the message stays written locally");

    // The replica comes back, catches up, and acknowledgements flow again.
    b.start();
    let seq = rt
        .block_on(q.enqueue_ref(&Order { id: 201, qty: 1 }))
        .unwrap();
    assert_eq!(seq, 201);
    assert!(holds(&b, 201) && holds(&c, 201));

    // Replication ends with the handle: later producers no longer wait for acknowledgements.
    drop(q);
    c.kill9();
    assert_eq!(early.enqueue(&Order { id: 202, qty: 1 }).unwrap(), 202);
}
