//! The node policy (a queue created under a node's persistence root waits for acknowledgements
//! from its first message) and the acknowledged word across terms.

use std::time::{Duration, Instant};

use super::{NodePolicy, ReplicationState, Role};
use crate::journal::Journal;
use crate::{JournalQueue, QueueError, ReplicationError};

fn sync_policy(timeout: Duration) -> NodePolicy {
    NodePolicy {
        node: "node-a".into(),
        role: Role::Primary,
        epoch: 1,
        required_acks: 2,
        ack_timeout: timeout,
    }
}

#[test]
fn a_queue_created_under_a_node_policy_waits_from_its_first_message() {
    let root = tempfile::tempdir().unwrap();
    sync_policy(Duration::from_millis(150))
        .write(root.path())
        .unwrap();
    let mut q = JournalQueue::<u64>::new(root.path().join("orders"), 1000).unwrap();
    let started = Instant::now();
    match q.enqueue(&1) {
        Err(QueueError::Replication(ReplicationError::AckTimeout {
            seq: 0, timeout, ..
        })) => {
            assert_eq!(timeout, Duration::from_millis(150));
        }
        other => panic!("the first message must wait for acknowledgements: {other:?}"),
    }
    // A lower bound (the timeout was honoured, no early return), not a speed goal: a slow
    // machine only makes the wait longer.
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Acknowledged by the (simulated) replication task: the next one returns at once.
    let journal = Journal::open(&root.path().join("orders"), false).unwrap();
    journal
        .meta
        .acked()
        .store(2, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(q.enqueue(&2).unwrap(), 1);

    // Without a node policy, a new queue is asynchronous; a queue created before the policy
    // file was written keeps its own policy.
    let other = tempfile::tempdir().unwrap();
    let mut q = JournalQueue::<u64>::new(other.path().join("orders"), 1000).unwrap();
    sync_policy(Duration::from_millis(150))
        .write(other.path())
        .unwrap();
    // (Nobody acknowledges here: a waiting enqueue would fail with AckTimeout.)
    assert_eq!(q.enqueue(&1).unwrap(), 0);
    let mut q2 = JournalQueue::<u64>::open(other.path().join("orders")).unwrap();
    assert_eq!(q2.enqueue(&2).unwrap(), 1);
}

#[test]
fn a_damaged_node_policy_refuses_to_create_queues() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        NodePolicy::path(root.path()),
        "version = 7\nrequired_acks = 1\n",
    )
    .unwrap();
    let e = JournalQueue::<u64>::new(root.path().join("orders"), 1000).unwrap_err();
    assert!(
        matches!(&e, QueueError::InvalidConfig(m) if m.contains("version 7")),
        "{e}"
    );
    assert!(!root.path().join("orders").join("queue.meta").exists());
}

#[test]
fn a_promoted_replica_does_not_reuse_an_old_terms_acknowledged_word() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("q");
    let mut q = JournalQueue::<u64>::new(&dir, 1000).unwrap();
    for i in 0..3 {
        q.enqueue(&i).unwrap();
    }
    drop(q);
    let journal = Journal::open(&dir, false).unwrap();
    // Left from a term in which this node was a primary whose replicas acknowledged 10.
    journal
        .meta
        .acked()
        .store(10, std::sync::atomic::Ordering::SeqCst);
    ReplicationState {
        role: Role::Replica,
        epoch: 2,
        ..ReplicationState::default()
    }
    .store(&dir)
    .unwrap();
    let state = ReplicationState::promote(&dir).unwrap();
    assert_eq!((state.epoch, state.epoch_start), (3, 3));
    assert_eq!(
        journal
            .meta
            .acked()
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[test]
fn a_reader_started_before_the_first_segment_sees_the_first_record() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("q");
    let mut q = JournalQueue::<u64>::new(&dir, 1000).unwrap();
    let journal = Journal::open(&dir, false).unwrap();
    let mut reader = crate::journal::Reader::at(journal, u64::MAX, false).unwrap();
    assert_eq!(reader.seq(), 0);
    assert!(reader.peek().unwrap().is_none());
    q.enqueue(&7).unwrap();
    let rec = reader.peek().unwrap().expect("the first record");
    reader.advance(&rec);
    assert_eq!(reader.seq(), 1);
}

#[test]
fn a_replicas_new_queue_is_a_replica_before_its_state_file_exists() {
    // The replica service creates a queue with the replica role in its policy words, then writes
    // `replication.json`. A daemon scanning the root in between (it looks every 100 ms) must not
    // take the queue for one of its own primaries: it would stream it to the real primary and
    // both would claim the same epoch.
    let root = tempfile::tempdir().unwrap();
    sync_policy(Duration::from_secs(5))
        .write(root.path())
        .unwrap();
    let dir = root.path().join("orders");
    let config = crate::journal::meta::MetaConfig {
        type_name: "std.u64".into(),
        fingerprint: 7,
        segment_size: 1 << 20,
        capacity: 1000,
        index_interval: 64,
        max_payload: 4096,
        lease_ms: 200,
        created_unix_nanos: 0,
    };
    let replica = crate::journal::InitialPolicy::Explicit(crate::journal::Policy {
        role: Role::Replica,
        epoch: 0,
        required_acks: 0,
        ack_timeout: crate::journal::DEFAULT_ACK_TIMEOUT,
    });
    Journal::create_or_open(&dir, &config, false, replica).unwrap();
    assert!(!dir.join(super::STATE_FILE).exists());
    let state = ReplicationState::load(&dir).unwrap();
    assert_eq!(state.role, Role::Replica, "{state:?}");
    assert_eq!(state.epoch, 0);

    // A queue this node writes (created under its node policy) is still its primary.
    JournalQueue::<u64>::new(root.path().join("mine"), 1000).unwrap();
    let mine = ReplicationState::load(&root.path().join("mine")).unwrap();
    assert_eq!(mine.role, Role::Primary);
}
