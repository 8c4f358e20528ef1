//! A segment file truncated while it is mapped (`truncate -s`, a failing disk, another program):
//! the processes that touch it get a typed `Corrupt` error naming the file, never `SIGBUS`
//! (issue 18 item 4; the mechanism is in `repliq/src/raw/sigbus.rs`). Covered: a producer, a
//! consumer and a tailer in this process, `repliq tail` as a process, and the primary's
//! `repliqd`, whose other queues keep replicating.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use repliq::{QueueError, QueueOptions, StartAt, Tailer};
use support::{Daemon, Order, free_port, held, order, wait_until};

fn segment_of(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.remove(0)
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The error for a truncated segment: a mapping that met the new end says "truncated while
/// mapped"; a process that maps the file afterwards finds it shorter than the segment size.
fn is_truncation_of(e: &QueueError, seg: &Path) -> bool {
    matches!(e, QueueError::Corrupt { path, reason, .. }
        if path == seg
            && (reason.contains("truncated while mapped") || reason.contains("segment file is 8192 bytes")))
}

/// Reads orders 1, 2, ... with `next` until it fails; returns the next id expected and the error.
fn read_until_error(
    who: &str,
    mut next: impl FnMut() -> Result<Option<Order>, QueueError>,
) -> (u64, QueueError) {
    let mut expected = 1;
    loop {
        match next() {
            Ok(Some(o)) => {
                assert_eq!(o, order(expected));
                expected += 1;
            }
            Ok(None) => panic!("{who} took the truncated part for the end after {expected}"),
            Err(e) => return (expected, e),
        }
    }
}

#[test]
fn producer_consumer_and_tailer_get_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("orders");
    let mut producer = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .producer()
        .create::<Order>(&q)
        .unwrap();
    let mut consumer = QueueOptions::new().consumer("c").open::<Order>(&q).unwrap();
    let mut tailer = Tailer::<Order>::open(&q, StartAt::Earliest).unwrap();
    for id in 0..200 {
        producer.enqueue(&order(id)).unwrap();
    }
    // The consumer and the tailer map the segment before it is truncated.
    assert_eq!(consumer.dequeue().unwrap(), Some(order(0)));
    assert_eq!(tailer.try_next().unwrap(), Some(order(0)));
    let seg = segment_of(&q);
    // Keep the first two pages: the segment header and the first records.
    truncate(&seg, 8192);

    // The producer's next write lands beyond the end: an error, not SIGBUS, and not Ok.
    let err = producer.enqueue(&order(1_000)).unwrap_err();
    assert!(is_truncation_of(&err, &seg), "{err}");
    // And stays one.
    let err = producer.enqueue(&order(1_001)).unwrap_err();
    assert!(is_truncation_of(&err, &seg), "{err}");

    // The consumer and the tailer read the records still in the file, then the error; never a
    // wrong record, and never the truncated part taken for the end.
    let (read, err) = read_until_error("the consumer", || consumer.dequeue());
    assert!(is_truncation_of(&err, &seg), "{err}");
    assert!(read < 200, "{read}");
    let (_, err) = read_until_error("the tailer", || tailer.try_next());
    assert!(is_truncation_of(&err, &seg), "{err}");
}

#[test]
fn repliq_tail_exits_with_an_error_instead_of_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("orders");
    let mut producer = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .producer()
        .create::<Order>(&q)
        .unwrap();
    for id in 0..200 {
        producer.enqueue(&order(id)).unwrap();
    }
    truncate(&segment_of(&q), 8192);
    let out = Command::new(env!("CARGO_BIN_EXE_repliq"))
        .args(["tail", "--no-follow"])
        .arg(&q)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "repliq tail was killed by a signal: {stderr}"
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("corrupt queue file") && stderr.contains("00000000000000000000.seg"),
        "{stderr}"
    );
}

#[test]
fn the_daemon_survives_a_truncated_queue_and_keeps_replicating_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "asynchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(dir.path(), "b", "asynchronous", &[("a", pa)], pb);
    a.start();
    b.start();
    let open = |name: &str| {
        QueueOptions::new()
            .capacity(1_000_000)
            .segment_size(1 << 20)
            .producer()
            .create::<Order>(a.root.join(name))
            .unwrap()
    };
    let (mut damaged, mut healthy) = (open("damaged"), open("healthy"));
    for id in 0..200 {
        damaged.enqueue(&order(id)).unwrap();
        healthy.enqueue(&order(id)).unwrap();
    }
    wait_until("b to hold both queues", || {
        held(&b.root.join("damaged")) == 200 && held(&b.root.join("healthy")) == 200
    });
    truncate(&segment_of(&a.root.join("damaged")), 8192);
    // Writes into the truncated part fail here; the daemon's tail watcher and replication of
    // that queue meet the truncation too.
    assert!(damaged.enqueue(&order(1_000)).is_err());
    for id in 200..400 {
        healthy.enqueue(&order(id)).unwrap();
    }
    wait_until("b to hold the healthy queue's new records", || {
        held(&b.root.join("healthy")) == 400
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let log = std::fs::read_to_string(a.log_path()).unwrap_or_default();
    // Said once, not every scan.
    let said = log
        .lines()
        .filter(|l| l.contains("truncated while mapped"))
        .count();
    assert!((1..=2).contains(&said), "{said} log lines about it:\n{log}");
    // /readyz names it (the node stays ready: its other queues are served), and so does
    // /metrics.
    let (_, ready) = support::http_get(a.http(), "/readyz");
    assert!(
        ready.contains("damaged: queue damaged:") && ready.contains("truncated while mapped"),
        "{ready}"
    );
    let (_, metrics) = support::http_get(a.http(), "/metrics");
    assert_eq!(
        support::metric(&metrics, "repliq_queue_damaged{queue=\"damaged\"}"),
        Some(1.0),
        "{metrics}"
    );
    let status = a.child.as_mut().unwrap().try_wait().unwrap();
    assert!(
        status.is_none(),
        "the primary's daemon died: {status:?}\n{}",
        std::fs::read_to_string(a.log_path()).unwrap_or_default()
    );
}
