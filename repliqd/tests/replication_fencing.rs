//! Fencing: a producer handle open on the primary while another node is promoted gets
//! `ReplicationError::Fenced` on a following `enqueue` (never an acknowledgement), and nothing it
//! wrote after the new epoch began is visible to consumers of the new primary (or of any node,
//! once they follow it).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use repliq::replication::{ReplicationState, Role};
use repliq::{JournalQueue, QueueError, ReplicationError};
use support::{Daemon, Order, all_orders, held, order, promote, wait_until};

#[test]
fn a_handle_on_the_old_primary_is_fenced_and_its_late_writes_never_surface() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        let text = std::fs::read_to_string(&n.config).unwrap();
        let text = text.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_timeout_ms: 300\n",
        );
        std::fs::write(&n.config, text).unwrap();
        n.start();
    }
    let q = |n: &Daemon| n.root.join("orders");
    let mut handle = JournalQueue::<Order>::new(q(&nodes[0]), 1_000_000).unwrap();
    for id in 0..50 {
        handle.enqueue(&order(id)).unwrap_or_else(|e| panic!("{e}"));
    }

    // b is promoted while a (its daemon and this handle) carries on.
    let state = promote(&q(&nodes[1]));
    assert_eq!((state.epoch, state.epoch_start), (2, 50));
    let mut late = BTreeSet::new();
    let started = Instant::now();
    let fenced = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the old primary's handle was never fenced"
        );
        let id = 1_000 + late.len() as u64;
        match handle.enqueue(&order(id)) {
            Ok(seq) => panic!("message {id} (seq {seq}) acknowledged after the promotion"),
            Err(QueueError::Replication(ReplicationError::AckTimeout { .. })) => {
                late.insert(id);
            }
            Err(QueueError::Replication(e @ ReplicationError::Fenced { .. })) => break e,
            Err(e) => panic!("unexpected error: {e}"),
        }
    };
    assert!(
        matches!(
            fenced,
            ReplicationError::Fenced {
                handle_epoch: 1,
                replica: true,
                ..
            }
        ),
        "{fenced}"
    );
    // Fenced for good: a second attempt is refused too, and writes nothing.
    let before = held(&q(&nodes[0]));
    assert!(matches!(
        handle.enqueue(&order(9_999)),
        Err(QueueError::Replication(ReplicationError::Fenced { .. }))
    ));
    assert!(held(&q(&nodes[0])) <= before);
    drop(handle);

    // Everyone follows b; writes on b are acknowledged by a and c.
    wait_until("a and c to follow epoch 2", || {
        [&nodes[0], &nodes[2]].iter().all(|n| {
            ReplicationState::load(&q(n)).is_ok_and(|s| s.role == Role::Replica && s.epoch == 2)
        })
    });
    let mut on_b = JournalQueue::<Order>::open(q(&nodes[1])).unwrap();
    for id in 2_000..2_020 {
        on_b.enqueue(&order(id)).unwrap_or_else(|e| panic!("{e}"));
    }
    for n in &nodes {
        wait_until("every node to hold b's writes", || held(&q(n)) == 70);
        let ids: Vec<u64> = all_orders(&q(n)).iter().map(|o| o.id).collect();
        let expected: Vec<u64> = (0..50).chain(2_000..2_020).collect();
        assert_eq!(ids, expected, "node {}", n.name);
        assert!(ids.iter().all(|id| !late.contains(id)));
    }
    eprintln!(
        "{} late writes on the old primary timed out, then fenced; none visible",
        late.len()
    );
}
