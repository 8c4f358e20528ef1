//! `ack_level: replicated` (docs/REPLICATION.md, "Acknowledgement levels"): a replica
//! acknowledges a record once it is in its journal, before it synced it. What that promises: an
//! acknowledged record survives the loss of the primary together with a crash of the replica
//! *process* (the journal's pages stay in the kernel's page cache). The test kills both daemons
//! while a synchronous producer writes, the replica first, and reads every acknowledged record
//! back from the replica's files.

mod support;

use support::{Daemon, Producer, all_orders, wait_until};

#[test]
#[ignore = "the body of the producer processes the other tests start (support::Producer)"]
fn producer_child() {
    support::producer_child();
}

#[test]
fn replicated_acknowledgements_survive_a_sigkill_of_the_replica_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "synchronous");
    for n in &mut nodes {
        let text = std::fs::read_to_string(&n.config).unwrap();
        std::fs::write(
            &n.config,
            text.replace(
                "  mode: synchronous\n",
                "  mode: synchronous\n  ack_level: replicated\n  ack_timeout_ms: 300\n",
            ),
        )
        .unwrap();
        n.start();
    }
    let (qa, qb) = (nodes[0].root.join("orders"), nodes[1].root.join("orders"));

    let mut producer = Producer::spawn(&qa, 0, 1_000_000, 60);
    wait_until("2,000 acknowledged orders", || {
        producer.acked().len() >= 2_000
    });
    // The replica's process dies mid-stream, then the primary: b cannot catch up from a.
    nodes[1].kill9();
    nodes[0].kill9();
    producer.kill9();

    let acked = producer.acked();
    assert!(acked.len() >= 2_000, "{} acknowledged", acked.len());
    let on_b = all_orders(&qb);
    let missing: Vec<(u64, u64)> = acked
        .iter()
        .copied()
        .filter(|&(seq, id)| on_b.get(seq as usize).is_none_or(|o| o.id != id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged orders are not on the replica at their sequence, first {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
