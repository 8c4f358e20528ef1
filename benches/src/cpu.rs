//! CPU time of processes and threads, for cost measures that do not depend on how many cores
//! the machine has or how busy they are: `getrusage` (microseconds, all threads of a process,
//! or one thread) and `/proc/<pid>/stat` (clock ticks) for processes the harness did not write.

use serde::{Deserialize, Serialize};

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// User time, ns.
    pub user_ns: u64,
    /// System (kernel) time, ns.
    pub sys_ns: u64,
}

impl Cpu {
    fn rusage(who: libc::c_int) -> Cpu {
        // SAFETY: `rusage` is plain old data; zeroes are a valid value and `getrusage` only
        // writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a live `rusage`; `who` is RUSAGE_SELF or RUSAGE_THREAD.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return Cpu::default();
        }
        let ns = |t: libc::timeval| {
            u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_usec).unwrap_or(0) * 1_000
        };
        Cpu {
            user_ns: ns(ru.ru_utime),
            sys_ns: ns(ru.ru_stime),
        }
    }

    /// This process, all its threads (live and exited).
    pub fn of_process() -> Cpu {
        Self::rusage(libc::RUSAGE_SELF)
    }

    /// The calling thread.
    pub fn of_thread() -> Cpu {
        Self::rusage(libc::RUSAGE_THREAD)
    }

    /// Another process (all its threads) from `/proc/<pid>/stat`: clock-tick resolution
    /// (10 ms at the usual 100 Hz), so meant for runs of seconds.
    pub fn of_pid(pid: u32) -> Option<Cpu> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields count from the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime(14) stime(15): indexes 11 and 12 here.
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|&h| h > 0)?;
        Some(Cpu {
            user_ns: utime * 1_000_000_000 / hz,
            sys_ns: stime * 1_000_000_000 / hz,
        })
    }

    /// User + system.
    pub fn total_ns(&self) -> u64 {
        self.user_ns + self.sys_ns
    }

    /// `self − earlier` (saturating).
    pub fn since(&self, earlier: Cpu) -> Cpu {
        Cpu {
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
        }
    }
}

/// CPU spent on moving `bytes` payload bytes, by part (process or thread).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuCost {
    /// Payload bytes the receiving side acknowledged (messages × message size).
    pub bytes: u64,
    /// Each part that was measured: what it is and its CPU time.
    pub parts: Vec<(String, Cpu)>,
}

impl CpuCost {
    /// CPU of all parts, ns.
    pub fn total_ns(&self) -> u64 {
        self.parts.iter().map(|(_, c)| c.total_ns()).sum()
    }

    /// Payload bytes per CPU-second (all parts together).
    pub fn bytes_per_cpu_sec(&self) -> f64 {
        let ns = self.total_ns();
        if ns == 0 {
            0.0
        } else {
            self.bytes as f64 * 1e9 / ns as f64
        }
    }

    /// CPU ns per payload byte.
    pub fn ns_per_byte(&self) -> f64 {
        if self.bytes == 0 {
            0.0
        } else {
            self.total_ns() as f64 / self.bytes as f64
        }
    }

    /// "replica 120.3 ms (user 80.1, sys 40.2) + …" for notes.
    pub fn breakdown(&self) -> String {
        self.parts
            .iter()
            .map(|(what, c)| {
                format!(
                    "{what} {:.1} ms (user {:.1}, sys {:.1})",
                    c.total_ns() as f64 / 1e6,
                    c.user_ns as f64 / 1e6,
                    c.sys_ns as f64 / 1e6
                )
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_grows_and_proc_stat_agrees() {
        let p0 = Cpu::of_process();
        let t0 = Cpu::of_thread();
        let mut x = 0u64;
        let end = std::time::Instant::now() + std::time::Duration::from_millis(60);
        while std::time::Instant::now() < end {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = Cpu::of_thread().since(t0).total_ns();
        assert!(
            spent > 20_000_000,
            "thread CPU {spent} ns after 60 ms of spinning"
        );
        assert!(Cpu::of_process().since(p0).total_ns() >= spent);
        let stat = Cpu::of_pid(std::process::id()).expect("own /proc stat");
        assert!(stat.total_ns() > 0);
    }

    #[test]
    fn cost_arithmetic() {
        let c = CpuCost {
            bytes: 2_000_000,
            parts: vec![
                (
                    "a".into(),
                    Cpu {
                        user_ns: 600_000_000,
                        sys_ns: 400_000_000,
                    },
                ),
                (
                    "b".into(),
                    Cpu {
                        user_ns: 1_000_000_000,
                        sys_ns: 0,
                    },
                ),
            ],
        };
        assert_eq!(c.total_ns(), 2_000_000_000);
        assert!((c.bytes_per_cpu_sec() - 1_000_000.0).abs() < 1e-6);
        assert!((c.ns_per_byte() - 1000.0).abs() < 1e-9);
        assert!(
            c.breakdown()
                .starts_with("a 1000.0 ms (user 600.0, sys 400.0) + b")
        );
    }
}
