//! A clock shared by all processes on the host.

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`, truncated to 32 bits (wraps after ~49 days;
/// compare with `wrapping_sub`). The monotonic clock is system-wide, so every process and
/// container on one kernel reads the same value: reservation leases stamped with it can be judged
/// by any process without knowing the owner's PID. The coarse variant (updated every tick, a few
/// milliseconds) is several times cheaper to read, and leases are hundreds of milliseconds.
pub(crate) fn monotonic_millis() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE is supported on Linux
    // since 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let millis = (ts.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts.tv_nsec as u64 / 1_000_000);
    millis as u32
}

/// Nanoseconds since the Unix epoch of `CLOCK_REALTIME_COARSE`: the wall clock as of the last
/// timer tick (resolution 1–4 ms, `clock_getres` tells; 4 ms on the benchmark VM). About 4 ns
/// from the vDSO against ~25 ns for `CLOCK_REALTIME` (~33 ns through `SystemTime::now`).
pub(crate) fn realtime_coarse_nanos() -> u64 {
    read_nanos(libc::CLOCK_REALTIME_COARSE)
}

/// Nanoseconds since the Unix epoch of `CLOCK_REALTIME` (full resolution).
pub(crate) fn realtime_nanos() -> u64 {
    read_nanos(libc::CLOCK_REALTIME)
}

#[inline]
fn read_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both realtime clocks exist on every Linux
    // this crate supports (the coarse one since 2.6.32).
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 || ts.tv_sec < 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
