//! A bug found by `replica_full_disk.rs` (issue 20), fixed by applying the node's policy to the
//! queues found at start (`ReplicationState::adopt_node_policy`): before, a queue that existed in
//! the persistence path before a synchronous `repliqd` started was not synchronous until the
//! daemon's replication task had taken it up. In that window (one queue
//! scan, 100 ms, and the task's start; over a second under load) its producers' `enqueue`
//! returns `Ok` without any replica's acknowledgement. Here the only replica never runs, so
//! every `Ok` is wrong; a queue the producer creates after the daemon started is not affected.
//! Measured (64 KiB segments): 25, 2 and 5 enqueues `Ok` in three runs before the first
//! `AckTimeout` on the existing queue, none on the new one.

mod support;

use repliq::QueueOptions;
use support::{Daemon, Order, Producer, free_port};

#[test]
#[ignore = "the body of the producer processes the other tests start (support::Producer)"]
fn producer_child() {
    support::producer_child();
}

#[test]
fn a_queue_made_before_the_daemon_never_acknowledges_without_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    // b is a peer that never runs: no enqueue may be acknowledged.
    let mut a = Daemon::new(
        dir.path(),
        "a",
        "synchronous",
        &[("b", free_port())],
        free_port(),
    );
    let existing = a.root.join("orders");
    drop(
        QueueOptions::new()
            .capacity(10_000_000)
            .segment_size(64 * 1024)
            .producer()
            .create::<Order>(&existing)
            .unwrap(),
    );
    a.start();
    let mut p = Producer::spawn(&existing, 0, 50, 4);
    p.wait();
    assert_eq!(
        p.acked(),
        vec![],
        "acknowledged without b on the queue made before the daemon"
    );
    let created_later = a.root.join("orders2");
    let mut p = Producer::spawn(&created_later, 0, 50, 4);
    p.wait();
    assert_eq!(
        p.acked(),
        vec![],
        "acknowledged without b on a queue made after"
    );
}
