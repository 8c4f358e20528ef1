//! `instructions`: instructions per `enqueue` / `dequeue` / zero-copy `read`, counted by
//! callgrind. Unlike a timed run, the count does not move when other processes share the CPUs,
//! so it shows what a change to the hot path costs or saves on a busy machine.
//!
//! ```text
//! cargo build --release -p repliq-bench --bin instructions
//! target/release/instructions                    # 64 B and 1 KiB, every operation
//! target/release/instructions --sizes 64 --ops enqueue,read --count 100000
//! target/release/instructions --timed            # the same loops natively: ns per operation
//! ```
//!
//! The driver re-runs this binary under `valgrind --tool=callgrind` once per (operation, size)
//! with collection switched on only inside one `#[inline(never)]` loop function
//! (`--toggle-collect`), so queue creation, the first segment, the warm-up and the setup of a
//! dequeue run (the enqueues) are not counted. The count is user-space instructions only: page
//! faults and system calls are the kernel's and do not show up here (see `benches/PERF.md`).
//! One process writes and then reads, so there is no cross-core traffic either: this is the
//! cost of the code, not of the machine.
//!
//! `--timed` runs the same worker loops natively instead and prints the best of five runs in
//! nanoseconds per operation (wall time of the counted loop; noisy on a shared machine, but the
//! cost one side of a ping-pong pays for its own work, without any cross-core traffic).

#[path = "../msg.rs"]
mod msg;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

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
        "usage: instructions [--sizes 64,1024] [--ops {}] [--count N] [--dir DIR] [--label TEXT] [--timed]",
        OPS.join(",")
    )
}

fn driver(args: &[String]) -> BoxResult<()> {
    let mut sizes = vec![64usize, 1024];
    let mut ops: Vec<String> = OPS.iter().map(|s| (*s).to_owned()).collect();
    let mut count: Option<u64> = None;
    let mut dir = std::env::temp_dir();
    let mut label = String::from("this build");
    let mut timed = false;
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
            "--timed" => timed = true,
            _ => return Err(usage().into()),
        }
    }
    let exe = std::env::current_exe()?;
    if timed {
        println!("ns per operation ({label}; wall time, best of {TIMED_RUNS} runs, one process)\n");
        println!("| operation | size | count | ns / op |");
    } else {
        println!("instructions per operation ({label}; callgrind, user space, one process)\n");
        println!("| operation | size | count | instructions / op |");
    }
    println!("|---|---:|---:|---:|");
    for size in &sizes {
        // Enough messages that the per-call cost dominates, few enough for one segment.
        let n = count.unwrap_or(if *size <= 256 { 200_000 } else { 50_000 });
        for op in &ops {
            if !OPS.contains(&op.as_str()) {
                return Err(format!("unknown operation {op}; {}", usage()).into());
            }
            if timed {
                let mut best = u64::MAX;
                for _ in 0..TIMED_RUNS {
                    best = best.min(run_timed(&exe, op, *size, n, &dir)?);
                }
                println!("| {op} | {size} B | {n} | {:.1} |", best as f64 / n as f64);
                continue;
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

/// Runs the worker for `op` natively; the counted loop's wall time in nanoseconds.
fn run_timed(exe: &Path, op: &str, size: usize, n: u64, dir: &Path) -> BoxResult<u64> {
    let out = Command::new(exe)
        .args(["worker", op, &size.to_string(), &n.to_string()])
        .arg(dir)
        .env(TIMED_ENV, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("worker {op} {size} failed:\n{stderr}").into());
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("loop_ns=")?.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("no loop_ns line from the worker:\n{stdout}").into())
}

/// Runs of each operation with `--timed`; the fastest counts (the others met interference).
const TIMED_RUNS: usize = 5;
/// Set for a worker started by `--timed`: it prints its counted loop's wall time.
const TIMED_ENV: &str = "REPLIQ_INSTRUCTIONS_TIMED";

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
    let timed = std::env::var_os(TIMED_ENV).is_some();
    let mut q = QueueOptions::new()
        .capacity(total * 2)
        .segment_size(segment)
        .max_message_size(64 << 10)
        // Timed: pages faulted in ahead by the background thread, as in the harness's queues
        // (a page fault is the kernel's cost, which callgrind does not count either).
        .prefault(timed)
        .create::<BenchMsg>(&path)?;
    q.warm_up(std::time::Duration::from_secs(10));
    let msg = BenchMsg::of_size(size);
    let bytes = repliq::to_bytes(&msg)?;
    match op.as_str() {
        "enqueue" => {
            fill(&mut q, &msg, WARMUP)?;
            let t = Instant::now();
            counted_enqueue(&mut q, &msg, n)?;
            report(t);
        }
        "enqueue_bytes" => {
            fill(&mut q, &msg, WARMUP)?;
            let t = Instant::now();
            counted_enqueue_bytes(&mut q, &bytes, n)?;
            report(t);
        }
        "dequeue" | "read" | "read_unchecked" | "read_batch" => {
            fill(&mut q, &msg, total)?;
            for _ in 0..WARMUP {
                q.dequeue()?.ok_or("queue empty during warm-up")?;
            }
            let t = Instant::now();
            let got = match op.as_str() {
                "dequeue" => counted_dequeue(&mut q, n)?,
                "read" => counted_read(&mut q, n)?,
                "read_batch" => counted_read_batch(&mut q, n)?,
                _ => counted_read_unchecked(&mut q, n)?,
            };
            report(t);
            if got != n {
                return Err(format!("read {got} of {n} messages").into());
            }
        }
        _ => return Err(usage().into()),
    }
    Ok(())
}

/// With `--timed`, prints the counted loop's wall time for the driver.
fn report(started: Instant) {
    if std::env::var_os(TIMED_ENV).is_some() {
        println!("loop_ns={}", started.elapsed().as_nanos());
    }
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
