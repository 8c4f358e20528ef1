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
