//! A replica whose full resync meets a full disk (issue 20, item 5): the primary no longer holds
//! the records the replica needs (its oldest segments are gone, as after retention), so it
//! announces a resync; the replica drops its segments and starts again at the primary's oldest
//! segment, but its file system is full (its old segment files are still linked elsewhere on the
//! same file system, so dropping them frees nothing) and the restart segment cannot be
//! allocated. The replica refuses with a typed error (`QueueError::Io`, ENOSPC, naming the
//! file) instead of panicking, holds nothing that `verify` rejects and nothing that differs
//! from the primary, and once space returns it resyncs to a byte-identical copy and follows new
//! records again. Nothing the primary committed is lost. The replica's persistence path is a
//! tmpfs this test mounts (root needed; skipped with a loud message otherwise).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use repliq::{QueueOptions, StartAt, Tailer};
use support::small_fs::{SmallFs, fill};
use support::{Daemon, Order, free_port, held, order, segment_files, wait_until};

/// Every record of the queue at `dir` from its oldest segment on, read without writing.
fn records(dir: &Path) -> Vec<Order> {
    let mut t = Tailer::<Order>::open(dir, StartAt::Earliest).unwrap();
    let mut out = Vec::new();
    while let Some(o) = t.try_next().unwrap() {
        out.push(o);
    }
    out
}

fn enqueue(dir: &Path, ids: std::ops::Range<u64>) {
    let mut p = QueueOptions::new().producer().open::<Order>(dir).unwrap();
    for id in ids {
        p.enqueue(&order(id)).unwrap();
    }
    p.flush().unwrap();
}

#[test]
fn a_resync_on_a_full_disk_is_an_io_error_and_recovers_when_space_returns() {
    let Some(fs) = SmallFs::mount("2m", "the resync full-disk test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "asynchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(fs.path(), "b", "asynchronous", &[("a", pa)], pb);
    let qa = a.root.join("orders");
    let qb = b.root.join("orders");
    drop(
        QueueOptions::new()
            .capacity(10_000_000)
            .segment_size(64 * 1024)
            .producer()
            .create::<Order>(&qa)
            .unwrap(),
    );
    enqueue(&qa, 0..300);
    b.start();
    a.start();
    wait_until("b to hold a's 300 records", || held(&qb) == 300);

    // b goes away; a writes on and its oldest segments go (as retention drops them): b now needs
    // records a no longer holds.
    b.kill9();
    enqueue(&qa, 300..4_000);
    a.kill9();
    let segments: Vec<String> = segment_files(&qa).into_iter().map(|(n, _)| n).collect();
    assert!(segments.len() >= 6, "a holds {segments:?}");
    for name in &segments[..segments.len() - 3] {
        std::fs::remove_file(qa.join(name)).unwrap();
    }
    let oldest: u64 = segments[segments.len() - 3]
        .trim_end_matches(".seg")
        .parse()
        .unwrap();
    assert!(oldest > 300, "a's oldest segment starts at {oldest}");
    let on_a = records(&qa);
    assert_eq!(on_a.first().map(|o| o.id), Some(oldest));

    // b starts again (a daemon writes its node policy at start), then its disk fills, and
    // dropping its segments for the resync will free nothing: each is also linked from another
    // directory of the same file system. a, started last, connects and resyncs b.
    b.start();
    let pinned = fs.path().join("pinned");
    std::fs::create_dir(&pinned).unwrap();
    for (name, _) in segment_files(&qb) {
        std::fs::hard_link(qb.join(&name), pinned.join(&name)).unwrap();
    }
    let ballast = fill(fs.path());
    a.start();
    let log_path = b.log_path();
    let log_b = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("b to report its full disk", || {
        log_b().contains("No space left on device")
    });
    // Let it retry a few times (each reconnection resyncs again and fails again).
    std::thread::sleep(Duration::from_secs(3));
    let log = log_b();
    let enospc = log
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap();
    eprintln!("b logged: {enospc}");
    let resync = log
        .find("full resync")
        .unwrap_or_else(|| panic!("b never began the resync:\n{log}"));
    assert!(
        resync < log.find("No space left on device").unwrap(),
        "the disk was full before the resync began, not during it:\n{log}"
    );
    assert!(enospc.contains("I/O error"), "a QueueError::Io: {enospc}");
    assert!(
        enospc.contains(&qb.display().to_string()),
        "the error names the queue's file: {enospc}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        b.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "b is still running"
    );
    // What b holds now is whole and is a's: nothing, or records from a's oldest on.
    if qb.join("queue.meta").exists() {
        repliq::verify(&qb, |_, _| {}).unwrap();
        let on_b = records(&qb);
        assert_eq!(
            on_b[..],
            on_a[..on_b.len()],
            "b holds a prefix of a's records"
        );
    }

    // Space returns: b resyncs to a byte-identical copy and follows new records.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_dir_all(&pinned).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_files(&qa) != segment_files(&qb) {
        assert!(
            Instant::now() < deadline,
            "b did not catch up in 60 s: a holds {}, b {}; b's log:\n{}",
            held(&qa),
            held(&qb),
            log_b()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    enqueue(&qa, 4_000..4_200);
    wait_until("b to follow new records", || held(&qb) == 4_200);
    let on_b = records(&qb);
    assert_eq!(on_b, records(&qa), "b holds exactly a's records");
    assert_eq!(on_b.first().map(|o| o.id), Some(oldest));
    assert_eq!(on_b.last().map(|o| o.id), Some(4_199));
    a.kill9();
    b.kill9();
}
