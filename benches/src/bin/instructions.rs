//! `instructions`: instructions per `enqueue` / `dequeue` / zero-copy `read`, counted by
//! callgrind. Unlike a timed run, the count does not move when other processes share the CPUs,
//! so it shows what a change to the hot path costs or saves on a busy machine.
//!
//! ```text
//! cargo build --release -p repliq-bench --bin instructions
//! target/release/instructions                    # 64 B and 1 KiB, every operation
//! target/release/instructions --sizes 64 --ops enqueue,read --count 100000
//! ```
//!
//! The driver re-runs this binary under `valgrind --tool=callgrind` once per (operation, size)
//! with collection switched on only inside one `#[inline(never)]` loop function
//! (`--toggle-collect`), so queue creation, the first segment, the warm-up and the setup of a
//! dequeue run (the enqueues) are not counted. The count is user-space instructions only: page
//! faults and system calls are the kernel's and do not show up here (see `benches/PERF.md`).
//! One process writes and then reads, so there is no cross-core traffic either: this is the
//! cost of the code, not of the machine.

#[path = "../msg.rs"]
mod msg;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use msg::BenchMsg;
use repliq::{JournalQueue, QueueOptions};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Messages written before the counted loop (creates the segment, warms caches).
const WARMUP: u64 = 64;

/// Every operation the worker can count.
const OPS: &[&str] = &[
    "enqueue",
    "enqueue_bytes",
    "dequeue",
    "read",
    "read_unchecked",
    "read_batch",
];

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]);
    }
    driver(&args)
}

fn usage() -> String {
    format!(
        "usage: instructions [--sizes 64,1024] [--ops {}] [--count N] [--dir DIR] [--label TEXT]",
        OPS.join(",")
    )
}

fn driver(args: &[String]) -> BoxResult<()> {
    let mut sizes = vec![64usize, 1024];
    let mut ops: Vec<String> = OPS.iter().map(|s| (*s).to_owned()).collect();
    let mut count: Option<u64> = None;
    let mut dir = std::env::temp_dir();
    let mut label = String::from("this build");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(usage);
        match a.as_str() {
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--ops" => ops = value()?.split(',').map(str::to_owned).collect(),
            "--count" => count = Some(value()?.parse()?),
            "--dir" => dir = PathBuf::from(value()?),
            "--label" => label = value()?,
            _ => return Err(usage().into()),
        }
    }
    let exe = std::env::current_exe()?;
    println!("instructions per operation ({label}; callgrind, user space, one process)\n");
    println!("| operation | size | count | instructions / op |");
    println!("|---|---:|---:|---:|");
    for size in &sizes {
        // Enough messages that the per-call cost dominates, few enough for one segment.
        let n = count.unwrap_or(if *size <= 256 { 200_000 } else { 50_000 });
        for op in &ops {
            if !OPS.contains(&op.as_str()) {
                return Err(format!("unknown operation {op}; {}", usage()).into());
            }
            let collected = run_callgrind(&exe, op, *size, n, &dir)?;
            println!(
                "| {op} | {size} B | {n} | {:.0} |",
                collected as f64 / n as f64
            );
        }
    }
    Ok(())
}

/// Runs the worker for `op` under callgrind, counting only inside its loop function.
fn run_callgrind(exe: &Path, op: &str, size: usize, n: u64, dir: &Path) -> BoxResult<u64> {
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--callgrind-out-file=/dev/null")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect=*counted_{op}*"))
        .arg(exe)
        .args(["worker", op, &size.to_string(), &n.to_string()])
        .arg(dir)
        .output()
        .map_err(|e| format!("running valgrind (apt-get install -y valgrind): {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("worker {op} {size} failed:\n{stderr}").into());
    }
    stderr
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Collected :")?;
            rest.trim().parse::<u64>().ok()
        })
        .ok_or_else(|| format!("no 'Collected' line from callgrind:\n{stderr}").into())
}

fn worker(args: &[String]) -> BoxResult<()> {
    let [op, size, n, dir] = args else {
        return Err(usage().into());
    };
    let (size, n): (usize, u64) = (size.parse()?, n.parse()?);
    let tmp = tempfile::tempdir_in(dir)?;
    let path = tmp.path().join("q");
    let total = n + WARMUP;
    // One segment holds everything: the count is the steady state, not a segment roll.
    let record = (size + 32).next_multiple_of(16) as u64;
    let segment = (total * record + (4 << 20)).next_multiple_of(4096);
    let mut q = QueueOptions::new()
        .capacity(total * 2)
        .segment_size(segment)
        .max_message_size(64 << 10)
        .create::<BenchMsg>(&path)?;
    let msg = BenchMsg::of_size(size);
    let bytes = repliq::to_bytes(&msg)?;
    match op.as_str() {
        "enqueue" => {
            fill(&mut q, &msg, WARMUP)?;
            counted_enqueue(&mut q, &msg, n)?;
        }
        "enqueue_bytes" => {
            fill(&mut q, &msg, WARMUP)?;
            counted_enqueue_bytes(&mut q, &bytes, n)?;
        }
        "dequeue" | "read" | "read_unchecked" | "read_batch" => {
            fill(&mut q, &msg, total)?;
            for _ in 0..WARMUP {
                q.dequeue()?.ok_or("queue empty during warm-up")?;
            }
            let got = match op.as_str() {
                "dequeue" => counted_dequeue(&mut q, n)?,
                "read" => counted_read(&mut q, n)?,
                "read_batch" => counted_read_batch(&mut q, n)?,
                _ => counted_read_unchecked(&mut q, n)?,
            };
            if got != n {
                return Err(format!("read {got} of {n} messages").into());
            }
        }
        _ => return Err(usage().into()),
    }
    Ok(())
}

fn fill(q: &mut JournalQueue<BenchMsg>, msg: &BenchMsg, n: u64) -> BoxResult<()> {
    for _ in 0..n {
        q.enqueue(msg)?;
    }
    Ok(())
}

#[inline(never)]
fn counted_enqueue(q: &mut JournalQueue<BenchMsg>, msg: &BenchMsg, n: u64) -> BoxResult<()> {
    for _ in 0..n {
        black_box(q.enqueue(black_box(msg))?);
    }
    Ok(())
}

#[inline(never)]
fn counted_enqueue_bytes(q: &mut JournalQueue<BenchMsg>, bytes: &[u8], n: u64) -> BoxResult<()> {
    for _ in 0..n {
        black_box(q.enqueue_bytes(black_box(bytes))?);
    }
    Ok(())
}

#[inline(never)]
fn counted_dequeue(q: &mut JournalQueue<BenchMsg>, n: u64) -> BoxResult<u64> {
    let mut got = 0;
    for _ in 0..n {
        if black_box(q.dequeue()?).is_some() {
            got += 1;
        }
    }
    Ok(got)
}

#[inline(never)]
fn counted_read(q: &mut JournalQueue<BenchMsg>, n: u64) -> BoxResult<u64> {
    let mut got = 0;
    for _ in 0..n {
        if q.read(|m| black_box(m.seq.to_native()))?.is_some() {
            got += 1;
        }
    }
    Ok(got)
}

/// `read_batch` in batches of 64 messages (one cursor move each).
#[inline(never)]
fn counted_read_batch(q: &mut JournalQueue<BenchMsg>, n: u64) -> BoxResult<u64> {
    let mut got = 0;
    while got < n {
        let want = (n - got).min(64) as usize;
        let k = q.read_batch(want, |_, m| {
            black_box(m.seq.to_native());
        })?;
        if k == 0 {
            break;
        }
        got += k as u64;
    }
    Ok(got)
}

#[inline(never)]
fn counted_read_unchecked(q: &mut JournalQueue<BenchMsg>, n: u64) -> BoxResult<u64> {
    let mut got = 0;
    for _ in 0..n {
        let r = q.read_bytes(|b| {
            // SAFETY: the bytes of a committed record of this queue, written by this process
            // as `BenchMsg` (the queue's fingerprint was checked when it was opened).
            let m = unsafe { repliq::access_unchecked::<BenchMsg>(b) };
            black_box(m.seq.to_native())
        })?;
        if r.is_some() {
            got += 1;
        }
    }
    Ok(got)
}
