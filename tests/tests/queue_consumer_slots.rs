//! Consumer cursor slots are reused: 10,000 register/remove cycles on one queue (64 slots),
//! every 100th by a holder process killed with SIGKILL while it holds its cursor, whose slot is
//! then removed with `repliq::remove_consumer` (what `repliq consumers DIR --remove` does) and
//! reused. Set `REPLIQ_SLOT_CYCLES` for another count.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use repliq::{QueueError, QueueOptions};

/// Twin of the helper binary's message (same name and shape, hence the same fingerprint).
#[repliq::message(name = "tests.Work")]
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub producer: u32,
    pub n: u64,
    pub body: Vec<u8>,
}

const WORKER: &str = env!("CARGO_BIN_EXE_queue_worker");

#[test]
fn ten_thousand_registrations_with_killed_holders_reuse_the_slots() {
    let cycles: usize = std::env::var("REPLIQ_SLOT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    // Lease 4 ms: a removed slot is reused 20 ms after its removal.
    let mut q = QueueOptions::new()
        .lease_timeout(Duration::from_millis(4))
        .create::<Work>(&path)
        .unwrap();
    let started = Instant::now();
    let (mut kills, mut waits) = (0usize, 0usize);
    for i in 0..cycles {
        let name = format!("c{i}");
        if i % 100 == 0 {
            // A holder in another process registers the cursor, waits for a message, and is
            // killed with SIGKILL holding it. (Waits for a free slot like the others.)
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut child = Command::new(WORKER)
                    .args(["wait", path.to_str().unwrap(), &name, "sync"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn queue_worker");
                let mut line = String::new();
                BufReader::new(child.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                if line.trim() == "ready" {
                    kills += 1;
                    break;
                }
                // No slot yet (all recently removed): the worker failed to open.
                assert!(Instant::now() < deadline, "cycle {i}: no slot for 10 s");
                waits += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut h = loop {
                match q.consumer(&name) {
                    Ok(h) => break h,
                    Err(QueueError::InvalidConfig(m)) if m.contains("can be reused") => {
                        assert!(Instant::now() < deadline, "cycle {i}: no slot for 10 s");
                        waits += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("cycle {i}: {e}"),
                }
            };
            assert_eq!(h.dequeue().unwrap(), None);
        }
        assert!(
            repliq::remove_consumer(&path, &name).unwrap(),
            "cycle {i}: {name} was registered"
        );
        if i % 1000 == 999 {
            let slots = repliq::consumer_slots(&path).unwrap();
            let active: BTreeSet<_> = slots
                .iter()
                .filter(|s| s.state == "active")
                .filter_map(|s| s.name.clone())
                .collect();
            assert_eq!(
                active,
                BTreeSet::from(["default".to_string()]),
                "cycle {i}: only the queue's own consumer is left"
            );
        }
    }
    let slots = repliq::consumer_slots(&path).unwrap();
    let generations: u64 = slots.iter().map(|s| u64::from(s.generation)).sum();
    let retired = slots.iter().filter(|s| s.state == "retired").count();
    // Every registration after the first 63 reused a removed slot.
    assert!(
        generations as usize >= cycles.saturating_sub(64),
        "{generations} reuses"
    );
    // And the queue is not exhausted: 60 names register (after the reuse delay).
    std::thread::sleep(Duration::from_millis(50));
    let names: Vec<_> = (0..60)
        .map(|i| q.consumer(&format!("last{i}")).unwrap())
        .collect();
    assert_eq!(names.len(), 60);
    q.enqueue(&Work {
        producer: 0,
        n: 0,
        body: vec![],
    })
    .unwrap();
    eprintln!(
        "{cycles} cycles, {kills} holders killed, {generations} slot reuses, {retired} retired \
         slots, {waits} waits for the reuse delay, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
