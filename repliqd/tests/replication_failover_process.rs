//! Failover with real processes only: three `repliqd` in synchronous mode (every replica must
//! acknowledge); a producer *process* creates the queue under node a's persistence path right
//! after the daemons started and enqueues in a loop, printing each sequence whose `enqueue`
//! returned `Ok`. a's daemon and the producer are SIGKILLed; b is promoted with `repliq promote`.
//! Every acknowledged message must be on b, once. Then a restarts, rejoins as a replica of the
//! new epoch and converges byte for byte, and a producer on b is acknowledged again with a and c
//! following.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use repliq::replication::{ReplicationState, Role};
use support::{Daemon, Producer, all_orders, held, promote, segment_files, wait_until};

#[test]
#[ignore = "the body of the producer processes the other tests start (support::Producer)"]
fn producer_child() {
    support::producer_child();
}

#[test]
fn no_acknowledged_message_is_lost_when_the_primary_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        n.start();
    }
    let q = |n: &Daemon| n.root.join("orders");

    // The producer creates the queue itself, right after the daemons started: its first
    // messages already wait for both replicas (the node policy), before a's daemon found it.
    let mut producer = Producer::spawn(&q(&nodes[0]), 0, 1_000_000, 60);
    let started = Instant::now();
    while producer.acked().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no acknowledgement: {:?}",
            producer.lines_with("")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    nodes[0].kill9();
    producer.kill9();
    let acked = producer.acked();
    let timeouts = producer.lines_with("TIMEOUT");
    assert!(
        producer.lines_with("ERR").is_empty(),
        "{:?}",
        producer.lines_with("ERR")
    );
    assert!(acked.len() >= 10, "only {} acknowledged", acked.len());
    eprintln!(
        "acknowledged {} (last seq {}), timed out {}",
        acked.len(),
        acked.last().unwrap().0,
        timeouts.len()
    );

    // b is promoted. Every acknowledged message is on it, at its sequence, exactly once.
    let state = promote(&q(&nodes[1]));
    assert_eq!((state.role, state.epoch), (Role::Primary, 2));
    let on_b = all_orders(&q(&nodes[1]));
    let ids: Vec<u64> = on_b.iter().map(|o| o.id).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message is duplicated on b");
    let missing: Vec<_> = acked
        .iter()
        .filter(|&&(seq, id)| ids.get(seq as usize) != Some(&id))
        .collect();
    eprintln!(
        "on b: {} records, {} acknowledged, lost {}",
        ids.len(),
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but not on b: {missing:?}");
    for (seq, o) in on_b.iter().enumerate() {
        assert_eq!(*o, support::order(seq as u64), "record {seq} on b");
    }
    let base = ids.len() as u64;
    assert_eq!(state.epoch_start, base);

    // The old primary restarts: it steps down, follows b and converges byte for byte.
    nodes[0].start();
    wait_until("a to follow b", || {
        eprintln!(
            "a: {:?} held {}, c held {}",
            ReplicationState::load(&q(&nodes[0])),
            held(&q(&nodes[0])),
            held(&q(&nodes[2]))
        );
        ReplicationState::load(&q(&nodes[0])).is_ok_and(|s| s.role == Role::Replica && s.epoch == 2)
            && held(&q(&nodes[0])) == base
            && held(&q(&nodes[2])) == base
    });

    // A producer on the new primary is acknowledged again (a and c both hold each message).
    let mut p2 = Producer::spawn(&q(&nodes[1]), base, 200, 60);
    p2.wait();
    let acked2 = p2.acked();
    assert_eq!(
        acked2.len(),
        200,
        "{:?}",
        p2.lines_with("TIMEOUT")
            .first()
            .or(p2.lines_with("ERR").first())
    );
    assert_eq!(acked2[0], (base, base));
    for n in &nodes {
        wait_until("every node to hold the new messages", || {
            held(&q(n)) == base + 200
        });
    }
    let reference = segment_files(&q(&nodes[1]));
    for n in [&nodes[0], &nodes[2]] {
        let files = segment_files(&q(n));
        assert_eq!(
            files.iter().map(|f| &f.0).collect::<Vec<_>>(),
            reference.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for ((name, bytes), (_, want)) in files.iter().zip(&reference) {
            assert!(
                bytes == want,
                "{}/{name} differs from the new primary's",
                n.name
            );
        }
    }
    assert_eq!(all_orders(&q(&nodes[0])), all_orders(&q(&nodes[1])));
}
