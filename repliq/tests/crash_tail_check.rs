//! A producer process killed with SIGKILL in the middle of appending leaves the queue's files as
//! the page cache holds them: written pages of a pre-allocated segment, the rest never touched
//! (a file-system hole, or cached zeros). The next producer's open proves where the tail is
//! (`Walk::check_tail`, which skips holes and zero header words): it must find every record the
//! killed producer committed, not one more, and append right after them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use repliq::{QueueOptions, StartAt, Tailer};

#[repliq::message(name = "crash.Msg")]
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub n: u64,
    pub body: Vec<u8>,
}

/// Set in the child process: the queue it appends to until killed.
const CHILD_ENV: &str = "REPLIQ_CRASH_TAIL_CHECK_QUEUE";
/// Records the child appends before the parent kills it (at least).
const BEFORE_KILL: u64 = 20_000;

fn msg(n: u64) -> Msg {
    Msg {
        n,
        body: vec![n as u8; (n % 200) as usize],
    }
}

#[test]
fn a_producer_killed_mid_append_leaves_a_tail_the_next_producer_finds() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: append until killed, saying how far it got.
        let mut q = QueueOptions::new().producer().open::<Msg>(&dir).unwrap();
        for n in 0.. {
            q.enqueue(&msg(n)).unwrap();
            if n % 1000 == 0 {
                println!("appended {n}");
            }
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    // Large segments: the rest after the tail is megabytes the child never touched.
    drop(
        QueueOptions::new()
            .segment_size(32 << 20)
            .capacity(1 << 30)
            .create::<Msg>(&path)
            .unwrap(),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_producer_killed_mid_append_leaves_a_tail_the_next_producer_finds",
            "--nocapture",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines {
        let line = line.unwrap();
        let done = line
            .strip_prefix("appended ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= BEFORE_KILL);
        if done || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL while it appends.
    child.kill().unwrap();
    child.wait().unwrap();

    // The next producer opens (the tail check runs here) and appends after the last record.
    let mut q = QueueOptions::new().producer().open::<Msg>(&path).unwrap();
    let mut tailer = Tailer::<Msg>::open(&path, StartAt::Earliest).unwrap();
    let mut committed = 0u64;
    while let Some(m) = tailer.try_next().unwrap() {
        assert_eq!(m, msg(committed), "record {committed}");
        committed += 1;
    }
    assert!(
        committed >= BEFORE_KILL,
        "only {committed} records before the kill"
    );
    eprintln!("{committed} records committed before the kill");
    let seq = q.enqueue(&msg(committed)).unwrap();
    assert_eq!(
        seq, committed,
        "the new record follows the killed producer's last"
    );
    assert_eq!(tailer.try_next().unwrap(), Some(msg(committed)));
    assert_eq!(tailer.try_next().unwrap(), None);
}
