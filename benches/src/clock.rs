//! Time and placement: a clock every process on the host shares, pacing, CPU pinning.

use std::time::Duration;

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process on a Linux host shares: a timestamp
/// written by one process can be subtracted from a reading taken in another.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Pins the calling thread to `cpu` if the machine has it. Returns whether it was pinned.
pub fn pin(cpu: Option<usize>) -> bool {
    let Some(cpu) = cpu else { return false };
    if cpu >= cpus() {
        return false;
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below the number of CPUs, far below CPU_SETSIZE; `set` is a valid set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid, initialised set of the given size.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// The CPUs a producer and a consumer are pinned to, or `None` on a machine with one CPU.
pub fn cpu_pair() -> (Option<usize>, Option<usize>) {
    if cpus() >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    }
}

/// A schedule of send times at a fixed rate. Latency is measured from the *intended* send time,
/// so a sender that falls behind shows up in the histogram (no coordinated omission).
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: u64,
    interval_ns: f64,
}

impl Pacer {
    /// A schedule starting now; `rate` messages per second, or 0 for "as fast as possible".
    pub fn new(rate: u64) -> Self {
        let interval_ns = if rate == 0 { 0.0 } else { 1e9 / rate as f64 };
        Self {
            start: now_ns() + if rate == 0 { 0 } else { 1_000_000 },
            interval_ns,
        }
    }

    /// The intended send time of message `i`.
    pub fn intended(&self, i: u64) -> u64 {
        self.start + (i as f64 * self.interval_ns) as u64
    }

    /// Waits until message `i` is due and returns its intended send time. Sleeps when the
    /// wait is long, spins when it is short.
    pub fn wait(&self, i: u64) -> u64 {
        let due = self.intended(i);
        loop {
            let now = now_ns();
            if now >= due {
                return due;
            }
            let left = due - now;
            if left > 200_000 {
                std::thread::sleep(Duration::from_nanos(left - 100_000));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// A deadline `secs` from now on [`now_ns`].
pub fn deadline(secs: f64) -> u64 {
    now_ns() + (secs * 1e9) as u64
}
