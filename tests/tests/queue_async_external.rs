//! The seed's async API from a crate outside the workspace (repliq with default features off,
//! plus tokio), in separate processes: producers with several tasks sharing one handle, some
//! killed with SIGKILL mid-stream, and two consumer processes whose tasks compete through clones
//! of one handle. Every acknowledged message is received, and no message is received twice.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn fixture_binary() -> PathBuf {
    let (_, target) = repliq_tests::cargo_on_fixture("build", "async-external");
    target.join("debug/repliq-async-external-fixture")
}

fn spawn(bin: &Path, args: &[&str]) -> Child {
    Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn fixture")
}

/// Reads `WORD producer n` lines until the process ends (or is killed).
fn read_lines(out: ChildStdout, word: &str) -> Vec<(u32, u64)> {
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(word)).then_some(())?;
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn async_producers_killed_and_competing_async_consumers_lose_and_duplicate_nothing() {
    let bin = fixture_binary();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("work");
    let q = queue.to_str().unwrap();

    // Create the queue first so that the consumers can open it.
    let mut first = spawn(&bin, &["produce", q, "0", "100", "2"]);
    let mut acked: Vec<(u32, u64)> = read_lines(first.stdout.take().unwrap(), "ack");
    assert!(first.wait().unwrap().success());
    assert_eq!(acked.len(), 100);

    let mut consumers: Vec<Child> = (0..2)
        .map(|_| spawn(&bin, &["consume", q, "3", "3000"]))
        .collect();
    let readers: Vec<_> = consumers
        .iter_mut()
        .map(|c| {
            let out = c.stdout.take().unwrap();
            std::thread::spawn(move || read_lines(out, "got"))
        })
        .collect();

    // Producers, each with 4 tasks; every other one is killed with SIGKILL mid-stream.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = 0;
    for id in 1..=8u32 {
        let mut p = spawn(&bin, &["produce", q, &id.to_string(), "20000", "4"]);
        let out = p.stdout.take().unwrap();
        let reader = std::thread::spawn(move || read_lines(out, "ack"));
        if id % 2 == 0 {
            std::thread::sleep(Duration::from_millis(30 + u64::from(id) * 7));
            p.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = p.wait().unwrap();
        acked.extend(reader.join().unwrap());
        if id % 2 == 1 {
            assert!(status.success(), "producer {id} failed: {status}");
        }
        assert!(Instant::now() < deadline, "the test ran out of time");
    }
    assert_eq!(killed, 4);

    let mut received: Vec<(u32, u64)> = Vec::new();
    for (c, r) in consumers.iter_mut().zip(readers) {
        assert!(c.wait().unwrap().success(), "a consumer failed");
        received.extend(r.join().unwrap());
    }

    let unique: HashSet<_> = received.iter().copied().collect();
    assert_eq!(
        unique.len(),
        received.len(),
        "{} messages were received twice",
        received.len() - unique.len()
    );
    let missing: BTreeSet<_> = acked.iter().filter(|m| !unique.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages were never received, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    // The survivors' messages are all there; the killed ones' acknowledged prefix too.
    for id in (1..=7u32).step_by(2) {
        assert_eq!(
            unique.iter().filter(|(p, _)| *p == id).count(),
            20_000,
            "producer {id}"
        );
    }
    eprintln!(
        "{} acknowledged, {} received, {killed} producers killed",
        acked.len(),
        received.len()
    );
}
