//! Multi-process tests of the queue: real child processes (`queue_worker`) producing and
//! consuming through one queue directory, a cross-process futex wake-up, and a kill -9 crash loop.
//!
//! The crash loop kills 200 producers by default; set `REPLIQ_CRASH_KILLS` for more.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repliq::{JournalQueue, QueueOptions, StartAt, Tailer};

/// Twin of the helper binary's message (same name and shape, hence the same fingerprint).
#[repliq::message(name = "tests.Work")]
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub producer: u32,
    pub n: u64,
    pub body: Vec<u8>,
}

fn body(producer: u32, n: u64) -> Vec<u8> {
    let len = (n % 61) as usize + (producer % 7) as usize;
    (0..len)
        .map(|i| (i as u64 ^ n ^ u64::from(producer)) as u8)
        .collect()
}

const WORKER: &str = env!("CARGO_BIN_EXE_queue_worker");

fn worker(args: &[&str]) -> Child {
    Command::new(WORKER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn queue_worker")
}

/// (producer, n) → the sequence number its `enqueue` returned, from `produce` workers' output.
static SEQS: Mutex<Option<HashMap<(u32, u64), u64>>> = Mutex::new(None);

/// Parses a worker's "producer n [seq]" line.
fn parse(line: &str) -> (u32, u64) {
    let mut it = line.split_whitespace();
    let p = it.next().unwrap().parse().unwrap();
    let n = it.next().unwrap().parse().unwrap();
    if let Some(seq) = it.next() {
        let mut seqs = SEQS.lock().unwrap();
        seqs.get_or_insert_default()
            .insert((p, n), seq.parse().unwrap());
    }
    (p, n)
}

fn output_lines(child: Child) -> Vec<(u32, u64)> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "worker failed: {:?}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(parse)
        .collect()
}

fn create(dir: &Path, segment_size: u64) -> JournalQueue<Work> {
    QueueOptions::new()
        .capacity(1 << 40)
        .segment_size(segment_size)
        .lease_timeout(Duration::from_millis(50))
        .create(dir)
        .unwrap()
}

#[test]
fn producers_and_competing_consumers_in_separate_processes() {
    const PRODUCERS: u32 = 3;
    const COUNT: u64 = 2000;
    const CONSUMERS: usize = 2;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let mut q = create(&dir, 64 * 1024);
    let d = dir.to_str().unwrap();
    // Register the fan-out cursor before anything is written.
    let mut audit = q.consumer("audit").unwrap();

    let consumers: Vec<Child> = (0..CONSUMERS)
        .map(|_| worker(&["consume", d, "workers"]))
        .collect();
    let producers: Vec<Child> = (0..PRODUCERS)
        .map(|p| worker(&["produce", d, &p.to_string(), &COUNT.to_string()]))
        .collect();
    for p in producers {
        assert_eq!(
            output_lines(p).len() as u64,
            COUNT,
            "every enqueue acknowledged"
        );
    }
    for _ in 0..CONSUMERS {
        q.enqueue(&Work {
            producer: u32::MAX,
            n: 0,
            body: vec![],
        })
        .unwrap();
    }
    let mut union = Vec::new();
    for c in consumers {
        let got = output_lines(c);
        // Order is preserved per producer within each consumer's stream.
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(p, n) in &got {
            if let Some(prev) = last.insert(p, n) {
                assert!(n > prev, "producer {p}: {n} after {prev}");
            }
        }
        union.extend(got);
    }
    let total = union.len();
    let set: HashSet<_> = union.into_iter().collect();
    assert_eq!(set.len(), total, "no message consumed twice");
    let expected: HashSet<_> = (0..PRODUCERS)
        .flat_map(|p| (0..COUNT).map(move |n| (p, n)))
        .collect();
    assert_eq!(set, expected, "the consumers together got everything");

    // A different consumer name sees every message, in per-producer order.
    let mut next = [0u64; PRODUCERS as usize];
    while let Some(w) = audit.dequeue().unwrap() {
        if w.producer == u32::MAX {
            continue;
        }
        assert_eq!(w.n, next[w.producer as usize]);
        assert_eq!(w.body, body(w.producer, w.n));
        next[w.producer as usize] += 1;
    }
    assert_eq!(next, [COUNT; PRODUCERS as usize]);
    assert_eq!(
        repliq::verify(&dir, |_, _| {}).unwrap().records,
        PRODUCERS as u64 * COUNT + 2
    );
}

fn wait_for_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    out
}

#[test]
fn a_waiting_consumer_in_another_process_is_woken() {
    for mode in ["sync", "async"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut q = create(tmp.path(), 64 * 1024);
        let mut child = worker(&["wait", tmp.path().to_str().unwrap(), "default", mode]);
        let mut out = wait_for_ready(&mut child);
        // Give the child time to get past spinning into its futex sleep (not an assertion on
        // time: the test passes either way, it only makes the futex path the likely one).
        std::thread::sleep(Duration::from_millis(100));
        q.enqueue(&Work {
            producer: 7,
            n: 42,
            body: body(7, 42),
        })
        .unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "7 42", "{mode}");
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn a_consumer_killed_mid_message_leaves_it_for_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut q = create(tmp.path(), 64 * 1024);
    for n in 0..3 {
        q.enqueue(&Work {
            producer: 5,
            n,
            body: body(5, n),
        })
        .unwrap();
    }
    let dir = tmp.path().to_str().unwrap();
    for _ in 0..2 {
        let out = worker(&["peek-and-die", dir, "default"])
            .wait_with_output()
            .unwrap();
        assert!(!out.status.success(), "the worker aborted");
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "5 0");
    }
    // Nothing was consumed: the next consumer gets message 0 (at-least-once).
    assert_eq!(q.dequeue().unwrap().map(|w| w.n), Some(0));
    assert_eq!(q.dequeue().unwrap().map(|w| w.n), Some(1));
}

#[test]
fn a_producer_waiting_for_room_is_woken_by_a_consumer_in_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let mut q: JournalQueue<Work> = QueueOptions::new()
        .capacity(2)
        .segment_size(64 * 1024)
        .create(tmp.path())
        .unwrap();
    let child = worker(&["produce-wait", tmp.path().to_str().unwrap(), "3", "10"]);
    let mut got = Vec::new();
    while got.len() < 10 {
        match q.dequeue_wait(Some(Duration::from_secs(60))).unwrap() {
            Some(w) => got.push(w.n),
            None => panic!("no message for 60 s"),
        }
        // The producer can never be more than `capacity` messages ahead.
        assert!(q.backlog().unwrap() <= 2);
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(output_lines(child).len(), 10);
}

struct Acks {
    lines: Arc<Mutex<Vec<(u32, u64)>>>,
    reader: std::thread::JoinHandle<()>,
}

fn collect_acks(child: &mut Child) -> Acks {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(parse(&line));
        }
    });
    Acks { lines, reader }
}

#[test]
fn producers_killed_with_sigkill_lose_no_acknowledged_message() {
    let kills: usize = std::env::var("REPLIQ_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let mut q = create(&dir, 64 * 1024);
    let d = dir.to_str().unwrap().to_owned();

    // A survivor producer that is never killed: it must finish while the others die around it.
    let mut survivor = worker(&["produce", &d, "1000000", "10000", "200"]);
    let survivor_acks = collect_acks(&mut survivor);

    let mut tailer: Tailer<Work> = Tailer::open(&dir, StartAt::Earliest).unwrap();
    let mut seen: HashSet<(u32, u64)> = HashSet::new();
    let mut acked: Vec<(u32, u64)> = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next_id = 0u32;
    let mut killed = 0;
    let mut round = 0u64;
    while killed < kills {
        let victims: Vec<(Child, Acks)> = (0..2)
            .map(|_| {
                next_id += 1;
                let mut c = worker(&["produce", &d, &next_id.to_string(), "1000000"]);
                let acks = collect_acks(&mut c);
                (c, acks)
            })
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(2_000 + rng % 15_000));
        for (mut c, acks) in victims {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
            killed += 1;
            acks.reader.join().unwrap();
            acked.extend(acks.lines.lock().unwrap().iter().copied());
        }
        // The queue opens and accepts writes after the kills.
        round += 1;
        q.enqueue(&Work {
            producer: 0,
            n: round,
            body: body(0, round),
        })
        .unwrap();
        acked.push((0, round));
        // Every message seen so far: whole (body matches) and unique.
        while let Some(w) = tailer.next_timeout(Duration::from_millis(1)).unwrap() {
            assert_eq!(w.body, body(w.producer, w.n), "torn or mixed-up record");
            assert!(
                seen.insert((w.producer, w.n)),
                "duplicate {} {}",
                w.producer,
                w.n
            );
        }
        let missing: Vec<_> = acked.iter().filter(|a| !seen.contains(a)).collect();
        // A record acked just now may not be visible to the tailer yet only if it is still
        // being read; the tailer drained everything committed, so nothing acked may be missing.
        assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
        if round.is_multiple_of(20) {
            eprintln!("round {round}: {killed} kills, {} records seen", seen.len());
            repliq::verify(&dir, |_, _| {}).unwrap();
        }
    }
    assert!(
        survivor.wait().unwrap().success(),
        "the survivor kept going"
    );
    survivor_acks.reader.join().unwrap();
    assert_eq!(survivor_acks.lines.lock().unwrap().len(), 10000);
    while let Some(w) = tailer.try_next().unwrap() {
        assert_eq!(w.body, body(w.producer, w.n));
        assert!(
            seen.insert((w.producer, w.n)),
            "duplicate {} {}",
            w.producer,
            w.n
        );
    }
    for n in 0..10000 {
        assert!(
            seen.contains(&(1_000_000, n)),
            "survivor message {n} missing"
        );
    }
    let report = repliq::verify(&dir, |_, _| {}).unwrap();
    assert_eq!(report.records as usize, seen.len());
    eprintln!(
        "crash loop: {killed} kills, {} records, {} abandoned reservations",
        report.records, report.abandoned
    );
}

/// Retention (`delete_consumed_segments`) while producers in three processes write, two consumer
/// processes share one cursor, and one producer is SIGKILLed mid-stream. No acknowledged message
/// may be lost, duplicated or read with a wrong body.
///
/// Before the fix (2026-12-01) this failed within a second: producers and consumers whose walk
/// lagged behind segments retention had deleted stopped with "segment file missing", and a
/// producer that waited for its spare file while others rolled, filled, and (after consumption)
/// deleted that segment re-created it: its acknowledged records got sequence numbers other
/// records had, behind every cursor, and were never delivered.
///
/// Run on a disk (consumed segments are deleted) and on tmpfs (they are recycled into new ones).
#[test]
fn retention_while_producers_consumers_and_a_kill_run_in_separate_processes() {
    retention_run(tempfile::tempdir().unwrap());
}

#[test]
fn retention_on_tmpfs_recycles_segments_while_producers_consumers_and_a_kill_run() {
    retention_run(tempfile::tempdir_in("/dev/shm").expect("tmpfs at /dev/shm"));
}

fn retention_run(tmp: tempfile::TempDir) {
    const COUNT: u64 = 3000;
    let dir = tmp.path().join("q");
    let mut q = create(&dir, 16 * 1024);
    let d = dir.to_str().unwrap().to_owned();

    // The consumers share the cursor every handle registers ("default"), so no other cursor
    // holds retention back.
    let consumers: Vec<Child> = (0..2)
        .map(|_| worker(&["consume", &d, "default"]))
        .collect();
    let producer = |p: u32, pause_us: &str| {
        Command::new(WORKER)
            .args(["produce", &d, &p.to_string(), &COUNT.to_string(), pause_us])
            .env("REPLIQ_WORKER_RETAIN", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn queue_worker")
    };
    let steady: Vec<Child> = (0..2).map(|p| producer(p, "0")).collect();
    // The victim writes slowly so that it is mid-stream when it dies.
    let mut victim = producer(2, "200");
    let mut acked = Vec::new();
    {
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        while acked.len() < 500 {
            match lines.next() {
                Some(Ok(line)) => acked.push(parse(&line)),
                _ => break,
            }
        }
        victim.kill().unwrap(); // SIGKILL
        victim.wait().unwrap();
        // Lines it printed before it died are acknowledged too.
        acked.extend(lines.map_while(Result::ok).map(|l| parse(&l)));
    }
    for p in steady {
        let got = output_lines(p);
        assert_eq!(got.len() as u64, COUNT, "every enqueue acknowledged");
        acked.extend(got);
    }
    for _ in 0..2 {
        q.enqueue(&Work {
            producer: u32::MAX,
            n: 0,
            body: vec![],
        })
        .unwrap();
    }
    let mut consumed = Vec::new();
    for c in consumers {
        consumed.extend(output_lines(c)); // a consumer exits non-zero on a wrong body
    }
    let total = consumed.len();
    let consumed: HashSet<_> = consumed.into_iter().collect();
    assert_eq!(consumed.len(), total, "no message consumed twice");
    let missing: Vec<_> = acked.iter().filter(|a| !consumed.contains(a)).collect();
    if !missing.is_empty() {
        // Which sequence numbers the lost messages got, and whether other messages got them too.
        let seqs = SEQS.lock().unwrap().clone().unwrap_or_default();
        let mut by_seq: HashMap<u64, Vec<(u32, u64)>> = HashMap::new();
        for (message, seq) in &seqs {
            by_seq.entry(*seq).or_default().push(*message);
        }
        let shared: Vec<_> = by_seq.values().filter(|v| v.len() > 1).take(5).collect();
        eprintln!(
            "lost {} messages, sequence numbers {:?}..{:?}; messages sharing one: {shared:?}",
            missing.len(),
            seqs.get(missing[0]),
            seqs.get(missing[missing.len() - 1])
        );
    }
    assert!(
        missing.is_empty(),
        "acknowledged but never consumed: {missing:?}"
    );
    repliq::verify(&dir, |_, _| {}).unwrap();
}

/// Producers that run retention on tmpfs (recycling consumed segment files into new ones in
/// their background thread) are SIGKILLed again and again while a consumer process reads.
/// Whatever a kill interrupts (a roll, a recycle's rename, `memset` or sync, a publication under
/// the segment lock), no acknowledged message may be lost, read twice or read with a wrong body,
/// and the queue must verify.
#[test]
fn producers_recycling_segments_killed_with_sigkill_lose_no_acknowledged_message() {
    const ROUNDS: u32 = 25;
    let tmp = tempfile::tempdir_in("/dev/shm").expect("tmpfs at /dev/shm");
    let dir = tmp.path().join("q");
    let mut q = create(&dir, 16 * 1024);
    let d = dir.to_str().unwrap().to_owned();
    let consumer = worker(&["consume", &d, "default"]);
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        let mut p = Command::new(WORKER)
            .args(["produce", &d, &round.to_string(), "1000000", "20"])
            .env("REPLIQ_WORKER_RETAIN", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn queue_worker");
        let mut lines = BufReader::new(p.stdout.take().unwrap()).lines();
        // One to five segments of ~170 records per round, a different amount each time.
        let target = 200 + (round as usize * 97) % 600;
        let mut n = 0;
        while n < target {
            match lines.next() {
                Some(Ok(line)) => acked.push(parse(&line)),
                _ => panic!("producer {round} stopped after {n} messages"),
            }
            n += 1;
        }
        p.kill().unwrap(); // SIGKILL
        p.wait().unwrap();
        acked.extend(lines.map_while(Result::ok).map(|l| parse(&l)));
    }
    q.enqueue(&Work {
        producer: u32::MAX,
        n: 0,
        body: vec![],
    })
    .unwrap();
    let consumed = output_lines(consumer); // it exits non-zero on a wrong body
    let total = consumed.len();
    let consumed: HashSet<_> = consumed.into_iter().collect();
    assert_eq!(consumed.len(), total, "no message consumed twice");
    let missing: Vec<_> = acked.iter().filter(|a| !consumed.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages never consumed: {missing:?}",
        missing.len(),
        acked.len()
    );
    repliq::verify(&dir, |_, _| {}).unwrap();
    eprintln!(
        "{ROUNDS} producers killed; {} acknowledged, {total} consumed",
        acked.len()
    );
}
