//! Replica processes and acknowledgement counting for the replication workloads that measure
//! cost (`repl_cost`) and compare with a replicated peer (`repliq_r3`): `n` repliq replica
//! processes (the `repliq-replica` child: repliq's gRPC `ReplicaService`) on loopback ports, and
//! a [`ReplicationObserver`] that counts what each replica acknowledged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use repliq::replication::ReplicationObserver;

use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildProc};
use crate::clock::now_ns;
use crate::cpu::Cpu;

/// Replica processes and the directories of one run.
#[derive(Debug)]
pub struct Replicas {
    /// Holds the primary's and every replica's journal; removed when dropped.
    pub root: tempfile::TempDir,
    /// The replica processes (killed when dropped).
    pub procs: Vec<ChildProc>,
    /// `name=127.0.0.1:port` of each replica, as [`repliq::replication::EmbeddedReplication`]
    /// takes them.
    pub addrs: Vec<String>,
}

impl Replicas {
    /// Starts `n` replica processes, each with its own persistence root under a new temporary
    /// directory, and waits until each listens. `secs` bounds the run (the children exit after
    /// three times that plus 30 s). With `tls` (a [`super::tls::Pki`] directory) they accept
    /// streams over mutual TLS only.
    pub fn spawn(n: usize, secs: f64, tls: Option<&str>) -> BoxResult<Replicas> {
        let root = tempfile::tempdir()?;
        let mut procs = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let dir = root.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&dir)?;
            let port = crate::servers::free_port()?;
            let cfg = ChildCfg {
                name: dir.display().to_string(),
                name2: String::new(),
                count: 0,
                size: 0,
                cpu: None,
                latency: false,
                secs_limit: secs * 3.0 + 30.0,
                extra: u64::from(port),
                events: None,
                tls: tls.map(str::to_owned),
            };
            let proc = child::spawn("repliq-replica", &cfg)?;
            proc.wait_ready(Duration::from_secs(30))?;
            procs.push(proc);
            addrs.push(format!("r{i}=127.0.0.1:{port}"));
        }
        Ok(Replicas { root, procs, addrs })
    }

    /// Where the primary's queue goes (not created).
    pub fn primary_dir(&self) -> PathBuf {
        self.root.path().join("primary").join("benchq")
    }

    /// The CPU time each replica process has used so far.
    pub fn cpu(&mut self) -> BoxResult<Vec<Cpu>> {
        self.procs
            .iter_mut()
            .map(|p| p.cpu(Duration::from_secs(10)))
            .collect()
    }
}

/// Counts the records each replica acknowledged (the primary's observer hook), and when the
/// last acknowledgement arrived.
#[derive(Debug, Default)]
pub struct Acks {
    acked: Mutex<HashMap<String, u64>>,
    changed: Condvar,
    last_ns: AtomicU64,
}

impl ReplicationObserver for Acks {
    fn acked_records(&self, _queue: &str, replica: &str, records: u64) {
        let now = now_ns();
        if let Ok(mut m) = self.acked.lock() {
            *m.entry(replica.to_owned()).or_default() += records;
        }
        self.last_ns.store(now, Ordering::Release);
        self.changed.notify_all();
    }
}

impl Acks {
    /// Waits until each of `replicas` replicas acknowledged at least `records` records, or
    /// until `until` (`CLOCK_MONOTONIC` ns). Returns the fewest records any of them
    /// acknowledged (0 for a replica that acknowledged nothing).
    pub fn wait_all(&self, replicas: usize, records: u64, until: u64) -> u64 {
        let fewest = |m: &HashMap<String, u64>| {
            if m.len() < replicas {
                0
            } else {
                m.values().copied().min().unwrap_or(0)
            }
        };
        let Ok(mut m) = self.acked.lock() else {
            return 0;
        };
        loop {
            let n = fewest(&m);
            let now = now_ns();
            if n >= records || now >= until {
                return n;
            }
            let wait = Duration::from_nanos((until - now).min(100_000_000));
            m = match self.changed.wait_timeout(m, wait) {
                Ok((m, _)) => m,
                Err(_) => return n,
            };
        }
    }

    /// `CLOCK_MONOTONIC` ns of the latest acknowledgement (0: none yet).
    pub fn last_ns(&self) -> u64 {
        self.last_ns.load(Ordering::Acquire)
    }
}
