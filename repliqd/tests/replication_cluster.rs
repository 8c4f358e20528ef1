//! Three `repliqd` processes on loopback replicate a queue written by a producer on the first
//! node: every replica's segment files end up byte-identical to the primary's, a consumer on a
//! replica reads every message in place, the primary's `/metrics` report it, and a replica killed
//! with SIGKILL mid-stream catches up after a restart with no gap and no duplicate.

mod support;

use repliq::{JournalQueue, QueueOptions, StartAt, Tailer};
use support::{Daemon, held, http_get, metric, segment_files, wait_until};

#[repliq::message(name = "test.Tick")]
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    seq: u64,
    symbol: String,
    price: i64,
}

fn tick(n: u64) -> Tick {
    Tick {
        seq: n,
        symbol: format!("SYM{}", n % 97),
        price: (n as i64) * 3 - 1000,
    }
}

fn produce(q: &mut JournalQueue<Tick>, range: std::ops::Range<u64>) {
    for n in range {
        q.enqueue(&tick(n)).unwrap();
    }
}

fn wait_replicated(nodes: &[Daemon], count: u64) {
    for n in nodes {
        let dir = n.root.join("ticks");
        wait_until(&format!("{} to hold {count} records", n.name), || {
            held(&dir) >= count
        });
        assert_eq!(held(&dir), count, "{} holds more than was written", n.name);
    }
}

#[test]
fn three_daemons_replicate_byte_identical_and_resume_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "asynchronous");
    for n in &mut nodes {
        n.start();
    }
    let primary_dir = nodes[0].root.join("ticks");
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .create::<Tick>(&primary_dir)
        .unwrap();
    produce(&mut q, 0..100_000);
    wait_replicated(&nodes[1..], 100_000);
    let primary = segment_files(&primary_dir);
    assert!(
        primary.len() > 2,
        "the journal rolled over several segments"
    );
    for n in &nodes[1..] {
        assert!(
            segment_files(&n.root.join("ticks")) == primary,
            "{}'s segment files differ from the primary's",
            n.name
        );
    }

    // A consumer on a replica reads every message in place (validated zero-copy access).
    let mut tailer = Tailer::<Tick>::open(nodes[1].root.join("ticks"), StartAt::Earliest).unwrap();
    let mut expected = 0u64;
    while let Some(ok) = tailer
        .read(|seq, t| {
            seq == t.seq.to_native() && t.seq == expected && t.symbol == tick(expected).symbol
        })
        .unwrap()
    {
        assert!(ok, "record {expected} differs");
        expected += 1;
    }
    assert_eq!(expected, 100_000);

    // The primary's metrics say so.
    let replicated = |body: &str, r: &str| {
        metric(
            body,
            &format!(r#"repliq_replicated_records_total{{queue="ticks",replica="{r}"}}"#),
        )
    };
    wait_until("acknowledgements in /metrics", || {
        let (_, body) = http_get(nodes[0].http(), "/metrics");
        replicated(&body, "b") == Some(100_000.0) && replicated(&body, "c") == Some(100_000.0)
    });
    let (_, body) = http_get(nodes[0].http(), "/metrics");
    assert_eq!(
        metric(&body, r#"repliq_enqueued_records_total{queue="ticks"}"#),
        Some(100_000.0)
    );
    // The lag gauges are refreshed every 250 ms: once everything is acknowledged they read 0.
    wait_until("zero lag in /metrics", || {
        let (_, body) = http_get(nodes[0].http(), "/metrics");
        ["b", "c"].iter().all(|r| {
            metric(
                &body,
                &format!(r#"repliq_replication_lag_records{{queue="ticks",replica="{r}"}}"#),
            ) == Some(0.0)
        })
    });
    assert!(
        metric(
            &body,
            r#"repliq_replicated_bytes_total{queue="ticks",replica="b"}"#
        )
        .is_some_and(|b| b > 100_000.0 * 32.0)
    );
    assert!(
        body.contains(r#"repliq_replication_ack_latency_seconds_count{queue="ticks",replica="b"}"#)
    );

    // Kill -9 replica c mid-stream, keep writing, restart it: it resumes without gap or duplicate.
    produce(&mut q, 100_000..130_000);
    nodes[2].kill9();
    produce(&mut q, 130_000..160_000);
    nodes[2].start();
    wait_replicated(&nodes[1..], 160_000);
    let primary = segment_files(&primary_dir);
    for n in &nodes[1..] {
        assert!(
            segment_files(&n.root.join("ticks")) == primary,
            "{}'s segment files differ from the primary's after the restart",
            n.name
        );
    }
    let mut c = QueueOptions::new()
        .consumer("audit")
        .open::<Tick>(nodes[2].root.join("ticks"))
        .unwrap();
    for n in 0..160_000 {
        assert_eq!(c.dequeue().unwrap(), Some(tick(n)));
    }
    assert_eq!(c.dequeue().unwrap(), None);
    wait_until("the metrics to follow", || {
        let (_, body) = http_get(nodes[0].http(), "/metrics");
        replicated(&body, "b") == Some(160_000.0)
    });
}
