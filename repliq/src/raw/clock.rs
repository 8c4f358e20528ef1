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
