//! A replica never applies an older epoch's frames once it has seen a newer epoch, on any stream
//! (docs/REPLICATION.md, "Epochs"). The old primary's streams may still be open: a primary that
//! was paused (a long GC pause, a frozen VM, `SIGSTOP`) while another node took over resumes with
//! them. None of its frames may land, and none of its synchronous enqueues may return `Ok`.
//!
//! * The hand-built case: a second primary of a newer epoch streams to replica b while a's
//!   stream of the older epoch is open; a's later writes are refused and its handle fenced.
//! * The paused primary with `repliq promote`: a's daemon is stopped while a producer on it
//!   waits, b is promoted and acknowledges new writes, a is resumed.
//!
//! The same with the etcd election is in `election_etcd.rs`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use repliq::replication::{
    PrimaryOptions, ReplicaAddr, ReplicationMode, ReplicationState, Role, run_primary,
};
use repliq::{JournalQueue, QueueError, ReplicationError};
use support::{Daemon, Order, Producer, all_orders, held, order, promote, signal, wait_until};

#[test]
#[ignore = "the body of the producer processes the other tests start (support::Producer)"]
fn producer_child() {
    support::producer_child();
}

fn copy_queue(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Replica b follows primary a (synchronous, one acknowledgement). Then "c", a primary of epoch
/// 2 that holds a's first 100 records, streams records 100 and 101 to b. a, still in epoch 1 on
/// the stream it opened before, enqueues 5 more: none may be acknowledged, and b keeps c's
/// records.
#[test]
fn a_replica_refuses_the_old_epochs_stream_after_a_newer_epochs_hello() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b, port_c) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let mut a = Daemon::new(dir.path(), "a", "synchronous", &[("b", port_b)], port_a);
    let mut b = Daemon::new(
        dir.path(),
        "b",
        "synchronous",
        &[("a", port_a), ("c", port_c)],
        port_b,
    );
    let text = std::fs::read_to_string(&a.config).unwrap();
    std::fs::write(
        &a.config,
        text.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_timeout_ms: 300\n",
        ),
    )
    .unwrap();
    a.start();
    b.start();
    let qa = a.root.join("orders");
    let qb = b.root.join("orders");
    let mut on_a = JournalQueue::<Order>::new(&qa, 1_000_000).unwrap();
    for id in 0..100 {
        on_a.enqueue(&order(id)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(held(&qb), 100);

    // "c": a's journal as of now, promoted to epoch 2 from sequence 100, with two new records.
    let qc = dir.path().join("c").join("orders");
    copy_queue(&qa, &qc);
    ReplicationState {
        role: Role::Primary,
        epoch: 2,
        epoch_start: 100,
        primary: Some("c".into()),
        ..ReplicationState::default()
    }
    .store(&qc)
    .unwrap();
    {
        let mut on_c = repliq::QueueOptions::new()
            .producer()
            .open::<Order>(&qc)
            .unwrap();
        on_c.enqueue(&order(500)).unwrap();
        on_c.enqueue(&order(501)).unwrap();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let c_primary = {
        let qc = qc.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let replicas = vec![ReplicaAddr::new("b", format!("127.0.0.1:{port_b}"))];
            let options = PrimaryOptions::new("c", replicas, ReplicationMode::Asynchronous);
            rt.block_on(run_primary(qc, options, stop_rx))
        })
    };
    wait_until("b to hold c's two records", || held(&qb) >= 102);
    let state = ReplicationState::load(&qb).unwrap();
    assert_eq!(
        (state.role, state.epoch, state.primary.as_deref()),
        (Role::Replica, 2, Some("c"))
    );

    // a still believes it is the primary of epoch 1.
    for id in 1_000..1_005 {
        match on_a.enqueue(&order(id)) {
            Ok(seq) => panic!("a's enqueue of {id} (seq {seq}) returned Ok after epoch 2 began"),
            Err(QueueError::Replication(
                ReplicationError::AckTimeout { .. } | ReplicationError::Fenced { .. },
            )) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    // Whatever a's stream still carries, b holds c's records and nothing of a's.
    std::thread::sleep(Duration::from_millis(500));
    let on_b: Vec<u64> = all_orders(&qb).iter().map(|o| o.id).collect();
    let expected: Vec<u64> = (0..100).chain([500, 501]).collect();
    assert_eq!(on_b, expected, "b's records after a's late writes");
    // a learned of the newer epoch from b's refusal and fenced itself.
    wait_until("a to step down", || {
        ReplicationState::load(&qa).is_ok_and(|s| s.role == Role::Replica)
    });
    assert!(matches!(
        on_a.enqueue(&order(2_000)),
        Err(QueueError::Replication(ReplicationError::Fenced { .. }))
    ));

    stop_tx.send(true).unwrap();
    c_primary.join().unwrap().unwrap();
}

/// Three daemons, synchronous with one acknowledgement; a producer on a. a's daemon is stopped
/// (`SIGSTOP`) while the producer waits, the replica holding the most is promoted with
/// `repliq promote` and acknowledges new writes, then a's daemon is resumed. No record a's
/// producer wrote from the new epoch's start on may be acknowledged, and every record the new
/// epoch acknowledged stays as written on both other nodes.
#[test]
fn a_paused_primary_resumes_fenced_after_a_manual_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        let text = std::fs::read_to_string(&n.config).unwrap();
        let text = text.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 1\n  ack_timeout_ms: 200\n",
        );
        std::fs::write(&n.config, text).unwrap();
        n.start();
    }
    let q = |n: &Daemon| n.root.join("orders");
    let mut producer = Producer::spawn(&q(&nodes[0]), 0, 1_000_000, 60);
    let started = Instant::now();
    while producer.lines_with("ACK").len() < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the producer on a is not acknowledged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&nodes[0], libc::SIGSTOP);
    // The producer keeps writing into a's journal; nothing acknowledges it now.
    std::thread::sleep(Duration::from_millis(600));

    let (new, other) = if held(&q(&nodes[1])) >= held(&q(&nodes[2])) {
        (1, 2)
    } else {
        (2, 1)
    };
    let state = promote(&q(&nodes[new]));
    assert_eq!(state.epoch, 2);
    let start = state.epoch_start;
    let mut second = Producer::spawn(&q(&nodes[new]), 1_000_000, 300, 60);
    second.wait();
    let acked_new = second.acked();
    assert_eq!(
        acked_new.len(),
        300,
        "the new primary acknowledges: {:?}",
        second.lines_with("")
    );

    signal(&nodes[0], libc::SIGCONT);
    // Give a's resumed streams time to deliver whatever they held, and its producer time to see
    // the outcome.
    wait_until("a to learn of epoch 2", || {
        ReplicationState::load(&q(&nodes[0])).is_ok_and(|s| s.role == Role::Replica)
    });
    std::thread::sleep(Duration::from_millis(500));
    producer.kill9();

    let late: Vec<(u64, u64)> = producer
        .acked()
        .into_iter()
        .filter(|&(seq, _)| seq >= start)
        .collect();
    assert!(
        late.is_empty(),
        "a acknowledged records of its own at sequences the new epoch owns: {late:?}"
    );
    for n in [new, other] {
        wait_until("the new epoch's records to reach every follower", || {
            held(&q(&nodes[n])) > acked_new.last().unwrap().0
        });
        let orders = all_orders(&q(&nodes[n]));
        for &(seq, id) in &acked_new {
            assert_eq!(
                orders.get(seq as usize).map(|o| o.id),
                Some(id),
                "node {}: acknowledged record {seq} of epoch 2 changed",
                nodes[n].name
            );
        }
    }
}
