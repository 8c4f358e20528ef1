//! `stalls`: where a producer and a consumer stall — the first message of a new queue and each
//! segment roll — counted in page faults (deterministic) and timed (noisy on a shared machine).
//!
//! ```text
//! cargo build --release -p repliq-bench --bin stalls
//! target/release/stalls [--size 1024] [--count 100000] [--segment-mib 8] [--dir /tmp]
//! ```
//!
//! A producer thread enqueues `count` messages as fast as it can into a queue created with
//! `prefault(true)` (as the harness does), a consumer thread (its own handle, so its own
//! mappings, as another process would have) reads them with `read`. Each thread's minor and
//! major page faults come from `getrusage(RUSAGE_THREAD)`; each enqueue is timed with
//! `CLOCK_MONOTONIC`. Reported: faults per thread, the first enqueue, and the slowest calls.

#[path = "../msg.rs"]
mod msg;

use std::time::Instant;

use msg::BenchMsg;
use repliq::QueueOptions;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn faults() -> (i64, i64) {
    let mut ru: libc::rusage = unsafe_zeroed_rusage();
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD is Linux's per-thread usage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (ru.ru_minflt, ru.ru_majflt)
}

fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: `rusage` is a plain C struct of integers and timevals: all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn main() -> BoxResult<()> {
    let mut size = 1024usize;
    let mut count = 100_000u64;
    let mut segment_mib = 8u64;
    let mut dir = std::env::temp_dir();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or("missing value")?;
        match a.as_str() {
            "--size" => size = v.parse()?,
            "--count" => count = v.parse()?,
            "--segment-mib" => segment_mib = v.parse()?,
            "--dir" => dir = v.into(),
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let tmp = tempfile::tempdir_in(&dir)?;
    let path = tmp.path().join("q");
    let mut q = QueueOptions::new()
        .capacity(count * 2)
        .segment_size(segment_mib << 20)
        .max_message_size(((size + 64) as u32).max(4096))
        .consumer("stalls")
        .prefault(true)
        .create::<BenchMsg>(&path)?;
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || -> BoxResult<(i64, i64, u64)> {
        let mut r = QueueOptions::new()
            .consumer("stalls")
            .prefault(true)
            .open::<BenchMsg>(&reader_path)?;
        let f0 = faults();
        let mut got = 0u64;
        let mut worst = 0u64;
        let mut last = Instant::now();
        while got < count {
            if r.read(|m| std::hint::black_box(m.seq.to_native()))?
                .is_some()
            {
                let now = Instant::now();
                if got > 0 {
                    worst = worst.max(now.duration_since(last).as_nanos() as u64);
                }
                last = now;
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        let f1 = faults();
        Ok((f1.0 - f0.0, f1.1 - f0.1, worst))
    });
    // Give the background preparation of the first segment the time a real producer has
    // between creating a queue and its first message (here: the reader thread starting).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut m = BenchMsg::of_size(size);
    let mut times = Vec::with_capacity(count as usize);
    let f0 = faults();
    for i in 0..count {
        m.seq = i;
        let t = Instant::now();
        q.enqueue(&m)?;
        times.push(t.elapsed().as_nanos() as u64);
    }
    let f1 = faults();
    let (rmin, rmaj, rworst) = reader.join().map_err(|_| "reader panicked")??;
    let first = times[0];
    let rolls = (count * (size as u64 + 32).next_multiple_of(16)) / (segment_mib << 20);
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "size {size} B, {count} messages, {segment_mib} MiB segments (~{rolls} rolls); cpu pressure: {}",
        std::fs::read_to_string("/proc/pressure/cpu")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("?")
    );
    println!(
        "producer: minor faults {} major {}; first enqueue {:.1} us; p50 {} ns p99 {} ns p99.9 {:.1} us max {:.1} us",
        f1.0 - f0.0,
        f1.1 - f0.1,
        first as f64 / 1e3,
        pct(0.5),
        pct(0.99),
        pct(0.999) as f64 / 1e3,
        times[times.len() - 1] as f64 / 1e3
    );
    println!(
        "consumer: minor faults {rmin} major {rmaj}; longest gap between two messages {:.1} us",
        rworst as f64 / 1e3
    );
    Ok(())
}
