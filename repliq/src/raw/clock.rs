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

/// Nanoseconds of `CLOCK_MONOTONIC_COARSE`: the monotonic clock as of the last timer tick, the
/// same value in every process and container on the kernel (no time namespace), a few ns to read.
#[inline]
pub(crate) fn monotonic_coarse_nanos() -> u64 {
    read_nanos(libc::CLOCK_MONOTONIC_COARSE)
}

/// How far `CLOCK_MONOTONIC_COARSE` may lag `CLOCK_MONOTONIC` (its resolution, `clock_getres`:
/// one timer tick, 1–4 ms; 4 ms assumed if the kernel does not say), read once.
pub(crate) fn monotonic_coarse_lag_nanos() -> u64 {
    static LAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LAG.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        if rc != 0 || ts.tv_sec < 0 || ts.tv_nsec < 0 {
            return 4_000_000;
        }
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    })
}

/// Nanoseconds of `CLOCK_MONOTONIC` (what `std::time::Instant` reads on Linux).
pub(crate) fn monotonic_nanos() -> u64 {
    read_nanos(libc::CLOCK_MONOTONIC)
}

/// The boot the monotonic clock belongs to: the first 64 bits of the kernel's random boot id
/// (`/proc/sys/kernel/random/boot_id`), the same in every process and container of one boot,
/// read once; 0 if it cannot be read (no `/proc`).
pub(crate) fn boot_id() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or(0, |s| parse_boot_id(&s))
    })
}

/// The first 16 hex digits of a boot id (`8f1c…-…`), dashes skipped; 0 if there are fewer.
fn parse_boot_id(text: &str) -> u64 {
    let digits: String = text
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    if digits.len() < 16 {
        return 0;
    }
    u64::from_str_radix(&digits, 16).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_id_reads_as_its_first_64_bits() {
        assert_eq!(
            parse_boot_id("8f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8\n"),
            0x8f1c_2a3b_4d5e_6f70
        );
        assert_eq!(parse_boot_id("not a boot id"), 0);
        assert_ne!(
            boot_id(),
            0,
            "this machine has /proc/sys/kernel/random/boot_id"
        );
    }

    #[test]
    fn the_coarse_clock_never_runs_ahead_of_the_precise_one() {
        let coarse = monotonic_coarse_nanos();
        let precise = monotonic_nanos();
        assert!(coarse <= precise, "{coarse} > {precise}");
        assert!(monotonic_coarse_lag_nanos() > 0);
    }
}
