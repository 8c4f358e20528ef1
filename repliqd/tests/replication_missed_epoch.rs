//! An old primary that missed a whole epoch moves aside everything it wrote alone, not only what
//! lies after the newest epoch's start (docs/REPLICATION.md, "Epochs"; seeds 113 and 163 of the
//! fault schedules, docs/CHECKER.md).
//!
//! Three daemons, asynchronous. a, primary of epoch 1, writes record 100 while b and c are down;
//! a goes down; b is promoted (epoch 2 from 100) and writes 100..109, which c receives; b goes
//! down; c is promoted (epoch 3 from 110) and writes 110..119. When a comes back, c's stream must
//! replace a's record 100 with b's: a replica that knew only epoch 3's start (110) kept it, and
//! held a record at 100 that no other node has (were a promoted next, b's record 100 was lost).
//! A consumer on a that had read a's record 100 reads b's record 100 next (its cursor is moved
//! back to where the records were replaced; found by the fault schedules' consumers).

mod support;

use repliq::replication::{ReplicationState, Role};
use support::{Daemon, Order, all_orders, held, order, promote, wait_until};

fn write(dir: &std::path::Path, ids: impl IntoIterator<Item = u64>) {
    let mut q = repliq::QueueOptions::new()
        .producer()
        .open::<Order>(dir)
        .unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()));
    for id in ids {
        q.enqueue(&order(id)).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The ids the durable consumer `name` reads from `dir` until the queue is empty (its cursor
/// moves past them).
fn consume(dir: &std::path::Path, name: &str) -> Vec<u64> {
    let mut consumer = repliq::QueueOptions::new()
        .consumer(name)
        .open::<Order>(dir)
        .unwrap();
    std::iter::from_fn(|| consumer.dequeue().unwrap())
        .map(|o| o.id)
        .collect()
}

fn ids(dir: &std::path::Path) -> Vec<u64> {
    all_orders(dir).iter().map(|o| o.id).collect()
}

#[test]
fn an_old_primary_that_missed_an_epoch_takes_that_epochs_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "asynchronous");
    for n in &mut nodes {
        n.start();
    }
    let q: Vec<_> = nodes.iter().map(|n| n.root.join("orders")).collect();
    let (qa, qb, qc) = (&q[0], &q[1], &q[2]);

    // Epoch 1, primary a: 100 orders everywhere.
    {
        let mut on_a = repliq::JournalQueue::<Order>::new(qa, 1_000_000).unwrap();
        for id in 0..100 {
            on_a.enqueue(&order(id)).unwrap();
        }
    }
    for n in [qb, qc] {
        wait_until("b and c to hold epoch 1's orders", || held(n) == 100);
    }

    // a is alone: its record 100 reaches nobody. Then a goes down.
    nodes[1].kill9();
    nodes[2].kill9();
    write(qa, [1_000]);
    // A consumer on a reads it (a consumer on a primary sees a record before any replica has
    // acknowledged it).
    let read = consume(qa, "billing");
    assert_eq!(read.len(), 101);
    assert_eq!(read.last(), Some(&1_000));
    // A second consumer that stays open through the failover (a running application): its
    // handle maps a's old segment file, which the move-aside replaces.
    let mut running = repliq::QueueOptions::new()
        .consumer("running")
        .open::<Order>(qa)
        .unwrap();
    let read: Vec<u64> = std::iter::from_fn(|| running.dequeue().unwrap())
        .map(|o| o.id)
        .collect();
    assert_eq!(read.last(), Some(&1_000));
    nodes[0].kill9();
    assert_eq!(held(qa), 101);

    // Epoch 2, primary b, from 100: 10 orders, which c receives.
    let b = promote(qb);
    assert_eq!((b.role, b.epoch, b.epoch_start), (Role::Primary, 2, 100));
    write(qb, 200..210);
    nodes[2].start();
    nodes[1].start();
    wait_until("c to hold epoch 2's orders", || held(qc) == 110);
    nodes[1].kill9();

    // Epoch 3, primary c, from 110: 10 orders.
    let c = promote(qc);
    assert_eq!((c.role, c.epoch, c.epoch_start), (Role::Primary, 3, 110));
    write(qc, 300..310);

    // a comes back (its state still says primary of epoch 1) and follows c.
    nodes[0].start();
    wait_until("a to follow c in epoch 3", || {
        ReplicationState::load(qa).is_ok_and(|s| s.role == Role::Replica && s.epoch == 3)
    });
    wait_until("a to hold c's 120 records", || held(qa) >= 120);
    let expected: Vec<u64> = (0..100).chain(200..210).chain(300..310).collect();
    assert_eq!(ids(qc), expected, "c's records");
    assert_eq!(
        ids(qa),
        expected,
        "a's records: its own record 100 (order 1000) must be gone"
    );

    // a's consumer reads on from where the records were replaced: b's record 100 and all after
    // it (its cursor was past 100, at a record that is gone).
    let after: Vec<u64> = (200..210).chain(300..310).collect();
    assert_eq!(
        consume(qa, "billing"),
        after,
        "a's consumer after the failover"
    );
    let read: Vec<u64> = std::iter::from_fn(|| running.dequeue().unwrap())
        .map(|o| o.id)
        .collect();
    assert_eq!(
        read, after,
        "a's consumer that stayed open through the failover"
    );

    // a's own record was moved aside, not lost: `repliq cat` reads it there.
    let aside = qa.join("moved-aside").join("epoch-3-from-100");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repliq"))
        .arg("cat")
        .arg(&aside)
        .args(["--from", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "repliq cat {}: {}",
        aside.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let moved: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["seq"].as_u64().unwrap(),
                l["message"]["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(moved, [(100, 1_000)], "the records set aside on a");
    // a now stores c's epoch history.
    let history: Vec<(u64, u64)> = c
        .epochs
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start))
        .collect();
    assert_eq!(history, [(1, 0), (2, 100), (3, 110)], "c's epoch history");
    let a = ReplicationState::load(qa).unwrap();
    assert_eq!(a.epochs, c.epochs, "a's epoch history after following c");
}
