//! Child processes of two-process workloads: the driver re-executes itself with a hidden
//! `child` subcommand. A child prints `READY` once it is set up and one `REPORT {json}` line
//! when done; the driver kills a child that overstays its time limit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::BoxResult;
use crate::stats::Latency;

/// What a child reports back to the driver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// Messages the child received.
    pub received: u64,
    /// Latency the child measured, if it measured any.
    pub latency: Option<Latency>,
    /// `CLOCK_MONOTONIC` time of the last receipt, in ns.
    pub last_ns: u64,
    /// The child's `RssAnon` at its end, bytes (0: not measured).
    #[serde(default)]
    pub rss_anon_bytes: u64,
    /// The child's `RssFile` + `RssShmem` at its end, bytes.
    #[serde(default)]
    pub rss_file_bytes: u64,
    /// `CLOCK_MONOTONIC` time at which the child started its measured work, in ns (0: none).
    #[serde(default)]
    pub start_ns: u64,
    /// CPU time the child spent in its measured work, all threads (0: not measured).
    #[serde(default)]
    pub cpu: crate::cpu::Cpu,
}

/// A field of `/proc/self/status` given in kB (e.g. `RssAnon`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    })
}

impl ChildReport {
    /// Records this process's resident memory now.
    pub fn with_memory(mut self) -> Self {
        self.rss_anon_bytes = status_bytes("RssAnon").unwrap_or(0);
        self.rss_file_bytes =
            status_bytes("RssFile").unwrap_or(0) + status_bytes("RssShmem").unwrap_or(0);
        self
    }
}

/// Configuration of a child that reads (or echoes) messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildCfg {
    /// A file path or a service name, depending on the workload.
    pub name: String,
    /// A second name (e.g. the reply service of a ping-pong).
    pub name2: String,
    /// Messages to expect.
    pub count: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// The CPU to pin to.
    pub cpu: Option<usize>,
    /// Whether to record one-way latency from the timestamp in each payload.
    pub latency: bool,
    /// Give up after this many seconds.
    pub secs_limit: f64,
    /// Workload-specific number (e.g. ring slots).
    pub extra: u64,
    /// Where a reader writes its event log (`run --events`), if anywhere.
    #[serde(default)]
    pub events: Option<String>,
    /// Replication over mutual TLS: the directory of the run's certificates
    /// ([`crate::workloads::tls::Pki`]); `None` streams in plain text.
    #[serde(default)]
    pub tls: Option<String>,
}

/// A running child process.
#[derive(Debug)]
pub struct ChildProc {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    role: String,
}

/// Starts `current_exe child <role> --cfg <json>`.
pub fn spawn(role: &str, cfg: &ChildCfg) -> BoxResult<ChildProc> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("child")
        .arg(role)
        .arg("--cfg")
        .arg(serde_json::to_string(cfg)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let stdin = child.stdin.take();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(ChildProc {
        child,
        stdin,
        lines: rx,
        role: role.to_owned(),
    })
}

impl ChildProc {
    fn next_line(&self, deadline: Instant) -> BoxResult<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("child `{}` timed out after {left:?}", self.role).into())
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("child `{}` exited without reporting", self.role).into())
            }
        }
    }

    /// Waits for the child's `READY` line.
    pub fn wait_ready(&self, timeout: Duration) -> BoxResult<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.next_line(deadline)? == "READY" {
                return Ok(());
            }
        }
    }

    /// Asks a child that called [`serve_cpu_queries`] for the CPU time all its threads have
    /// used so far (`getrusage(RUSAGE_SELF)` in the child: microsecond resolution, unlike the
    /// clock ticks of `/proc/<pid>/stat`).
    pub fn cpu(&mut self, timeout: Duration) -> BoxResult<crate::cpu::Cpu> {
        let stdin = self.stdin.as_mut().ok_or("child has no stdin")?;
        writeln!(stdin, "CPU")?;
        stdin.flush()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(json) = self.next_line(deadline)?.strip_prefix("CPU ") {
                return Ok(serde_json::from_str(json)?);
            }
        }
    }

    /// Kills the child with SIGKILL (`kill -9`) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child's report, then for it to exit.
    pub fn wait_report(mut self, timeout: Duration) -> BoxResult<ChildReport> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline)?;
            if let Some(json) = line.strip_prefix("REPORT ") {
                let report = serde_json::from_str(json)?;
                let _ = self.child.wait();
                return Ok(report);
            }
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: answers each `CPU` line on stdin with `CPU {json}` (this process's CPU time so
/// far, all threads), on a thread of its own that sleeps in `read` between queries.
pub fn serve_cpu_queries() {
    std::thread::spawn(|| {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "CPU" {
                let mut out = std::io::stdout().lock();
                let cpu = crate::cpu::Cpu::of_process();
                let _ = writeln!(
                    out,
                    "CPU {}",
                    serde_json::to_string(&cpu).unwrap_or_default()
                );
                let _ = out.flush();
            }
        }
    });
}

/// In a child: tells the driver it is set up.
pub fn ready() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "READY");
    let _ = out.flush();
}

/// In a child: sends the report.
pub fn report(r: &ChildReport) -> BoxResult<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "REPORT {}", serde_json::to_string(r)?)?;
    out.flush()?;
    Ok(())
}
