//! A full disk (issue 20): the test mounts a small tmpfs (root needed; skipped with a loud
//! message otherwise), fills it through `enqueue`, and checks that the producer gets a typed
//! `QueueError::Io` naming the file (no panic, no SIGBUS from a mapped page without backing),
//! that every message acknowledged before stays readable, and that the queue works again when
//! space returns.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use repliq::{QueueError, QueueOptions, StartAt, Tailer};

#[repliq::message(name = "full.Blob")]
#[derive(Debug, Clone, PartialEq)]
struct Blob {
    n: u64,
    body: Vec<u8>,
}

fn blob(n: u64) -> Blob {
    Blob {
        n,
        body: vec![(n % 251) as u8; 1000],
    }
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "repliq-full",
            ])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallFs { dir }),
            other => {
                eprintln!(
                    "\n*** SKIPPED: cannot mount a tmpfs ({other:?}); the full-disk test needs \
                     root (CAP_SYS_ADMIN) ***\n"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remounting with size={size}");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn enqueue_on_a_full_disk_is_an_io_error_and_loses_nothing() {
    let Some(fs) = SmallFs::mount("1m") else {
        return;
    };
    let dir = fs.path().join("q");
    let mut q = QueueOptions::new()
        .segment_size(64 * 1024)
        .capacity(1_000_000)
        .create::<Blob>(&dir)
        .unwrap();
    let mut acked = 0u64;
    let mut error = None;
    // 1 MiB holds well under 1000 records of 1 KB: the loop ends with an error, not the bound.
    for n in 0..5_000 {
        match q.enqueue(&blob(n)) {
            Ok(_) => acked += 1,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("a 1 MiB file system filled up without an error");
    eprintln!("after {acked} messages: {error}");
    match &error {
        QueueError::Io { context, source } => {
            assert!(
                context.contains(&fs.path().display().to_string()),
                "the error names the file: {context}"
            );
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
        }
        other => panic!("expected QueueError::Io, got {other:?}"),
    }
    assert!(acked > 100, "only {acked} messages fit");
    // Further attempts fail the same way, without damage.
    for n in acked..acked + 5 {
        assert!(matches!(q.enqueue(&blob(n)), Err(QueueError::Io { .. })));
    }

    // Every acknowledged message is readable, in order, by a new reader.
    let check = |upto: u64| {
        let mut t = Tailer::<Blob>::open(&dir, StartAt::Earliest).unwrap();
        for n in 0..upto {
            let got = t.next_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(got, Some(blob(n)), "message {n}");
        }
        assert_eq!(t.try_next().unwrap(), None, "nothing after {upto}");
    };
    check(acked);
    assert_eq!(repliq::verify(&dir, |_, _| {}).unwrap().records, acked);

    // Space returns: the same handle appends again, after the acknowledged messages.
    fs.resize("4m");
    for n in acked..acked + 100 {
        q.enqueue(&blob(n)).unwrap();
    }
    drop(q);
    check(acked + 100);
}

/// Fills the file system of `dir` with a ballast file until ENOSPC; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5Au8; 4096];
    for _ in 0..1_000_000 {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

/// A consumer's cursor lives in the meta file's slots, allocated when the queue was created:
/// moving it (and registering a new consumer) needs no new block, so a full disk does not stop
/// consumers. Any error would have to be a typed `QueueError::Io` (ENOSPC); a cursor that moved
/// is durable (a new handle resumes after it); nothing committed is lost; producers get
/// `QueueError::Io` while the disk is full and work again when space returns.
#[test]
fn a_cursor_update_on_a_full_disk_is_durable_and_loses_nothing() {
    let Some(fs) = SmallFs::mount("1m") else {
        return;
    };
    let dir = fs.path().join("q");
    let mut producer = QueueOptions::new()
        .segment_size(64 * 1024)
        .capacity(1_000_000)
        .producer()
        .create::<Blob>(&dir)
        .unwrap();
    for n in 0..200 {
        producer.enqueue(&blob(n)).unwrap();
    }
    producer.flush().unwrap();
    let mut c = QueueOptions::new()
        .consumer("c")
        .open::<Blob>(&dir)
        .unwrap();
    for n in 0..50 {
        assert_eq!(c.dequeue().unwrap(), Some(blob(n)));
    }

    let ballast = fill(fs.path());
    // The disk is full: a producer's next segment cannot be allocated.
    let mut full = None;
    for n in 200..2_000 {
        if let Err(e) = producer.enqueue(&blob(n)) {
            full = Some(e);
            break;
        }
    }
    match full {
        Some(QueueError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
        }
        other => panic!("expected ENOSPC from the producer, got {other:?}"),
    }
    let written = repliq::verify(&dir, |_, _| {}).unwrap().records;

    // Cursor updates (each dequeue moves c's cursor) and a new consumer's registration.
    let mut moved = 50;
    for n in 50..120 {
        match c.dequeue() {
            Ok(got) => {
                assert_eq!(got, Some(blob(n)));
                moved = n + 1;
            }
            Err(QueueError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
                break;
            }
            Err(other) => panic!("a cursor update on a full disk: {other:?}"),
        }
    }
    eprintln!("on the full disk consumer c moved its cursor to {moved}");
    // New consumers on the full disk: twenty names spread over the slots (both pages of the
    // meta file's slot table), each registering and moving its cursor once.
    let late: Vec<String> = (0..20).map(|i| format!("late-{i}")).collect();
    let mut registered = Vec::new();
    for name in &late {
        let taken = QueueOptions::new()
            .consumer(name.as_str())
            .open::<Blob>(&dir)
            .and_then(|mut q| q.dequeue());
        match taken {
            Ok(got) => {
                assert_eq!(got, Some(blob(0)), "consumer {name}");
                registered.push(name.clone());
            }
            Err(QueueError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
            }
            Err(other) => panic!("registering consumer {name} on a full disk: {other:?}"),
        }
    }
    eprintln!(
        "{} of 20 consumers registered on the full disk",
        registered.len()
    );
    drop(c);
    drop(producer);

    // A new handle of c resumes after the last record it took, still on the full disk.
    let mut c = QueueOptions::new()
        .consumer("c")
        .open::<Blob>(&dir)
        .unwrap();
    assert_eq!(
        c.dequeue().unwrap(),
        Some(blob(moved)),
        "c resumes at {moved}"
    );
    assert_eq!(repliq::verify(&dir, |_, _| {}).unwrap().records, written);

    // Space returns: producers append again, consumers read everything, in order.
    std::fs::remove_file(ballast).unwrap();
    let mut producer = QueueOptions::new().producer().open::<Blob>(&dir).unwrap();
    for n in written..written + 100 {
        producer.enqueue(&blob(n)).unwrap();
    }
    producer.flush().unwrap();
    for n in moved + 1..written + 100 {
        assert_eq!(c.dequeue().unwrap(), Some(blob(n)), "message {n}");
    }
    assert_eq!(c.dequeue().unwrap(), None);
    for name in &registered {
        let mut q = QueueOptions::new()
            .consumer(name.as_str())
            .open::<Blob>(&dir)
            .unwrap();
        assert_eq!(
            q.dequeue().unwrap(),
            Some(blob(1)),
            "consumer {name} resumes at 1"
        );
    }
}
