//! Dead replication streams are found in seconds (issue 24, keep-alive): every packet to and from
//! a replica's port is dropped (no FIN, no RST: a node or pod gone, a partition), and the primary
//! must notice while the partition lasts, instead of when the kernel gives up on the connection
//! (`tcp_retries2`, about 15 minutes). After the partition heals the replica is resubscribed and
//! catches up.
//!
//! Needs root and `iptables` (both on the project's machines and in CI); skipped, saying so,
//! otherwise. The rules match only this test's port on loopback and are removed on every exit
//! path.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use repliq::QueueOptions;
use support::{Daemon, Order, free_port, held, order, wait_until};

/// DROP rules for one loopback port, removed when dropped.
struct Partition {
    port: u16,
}

impl Partition {
    fn rules(port: u16) -> [Vec<String>; 2] {
        let p = port.to_string();
        [
            [
                "INPUT", "-i", "lo", "-p", "tcp", "--dport", &p, "-j", "DROP",
            ]
            .map(String::from)
            .to_vec(),
            [
                "INPUT", "-i", "lo", "-p", "tcp", "--sport", &p, "-j", "DROP",
            ]
            .map(String::from)
            .to_vec(),
        ]
    }

    fn cut(port: u16) -> Option<Partition> {
        let works = Command::new("iptables")
            .args(["-w", "-L", "INPUT", "-n"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            eprintln!("SKIPPED: iptables is not usable here (needs root and iptables)");
            return None;
        }
        for rule in Self::rules(port) {
            let ok = Command::new("iptables")
                .args(["-w", "-I"])
                .args(&rule)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "iptables -I {rule:?}");
        }
        Some(Partition { port })
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in Self::rules(self.port) {
            let _ = Command::new("iptables")
                .args(["-w", "-D"])
                .args(&rule)
                .status();
        }
    }
}

#[test]
fn a_partitioned_replicas_dead_stream_is_found_in_seconds_and_it_catches_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "asynchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(dir.path(), "b", "asynchronous", &[("a", pa)], pb);
    a.start();
    b.start();
    let q = a.root.join("orders");
    let mut producer = QueueOptions::new()
        .capacity(10_000_000)
        .producer()
        .create::<Order>(&q)
        .unwrap();
    for id in 0..100 {
        producer.enqueue(&order(id)).unwrap();
    }
    wait_until("b to follow", || held(&b.root.join("orders")) == 100);
    let before = std::fs::read_to_string(a.log_path()).unwrap_or_default();
    let noticed = |log: &str| {
        log[before.len().min(log.len())..]
            .lines()
            .any(|l| l.contains("replica unreachable") && l.contains("replica=b"))
    };

    let Some(cut) = Partition::cut(pb) else {
        return;
    };
    let cut_at = Instant::now();
    // Writes go on during the partition; they cannot reach b.
    let mut id = 100;
    let mut found = None;
    // The partition lasts 10 s: long enough for a keep-alive timeout (1 s + 3 s) and the retry,
    // far shorter than the kernel's retransmission limit, which is all that ends a dead stream
    // without keep-alive.
    while cut_at.elapsed() < Duration::from_secs(10) {
        producer.enqueue(&order(id)).unwrap();
        id += 1;
        if found.is_none() && noticed(&std::fs::read_to_string(a.log_path()).unwrap_or_default()) {
            found = Some(cut_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = found.unwrap_or_else(|| {
        panic!(
            "the primary did not notice the dead stream during a 10 s partition:\n{}",
            std::fs::read_to_string(a.log_path()).unwrap_or_default()
        )
    });
    eprintln!("dead stream noticed {found:?} after the partition began");
    drop(cut);
    let healed = Instant::now();
    wait_until("b to catch up after the partition", || {
        held(&b.root.join("orders")) == id
    });
    eprintln!(
        "caught up {:?} after the partition healed",
        healed.elapsed()
    );
}
