//! Replication's cost in CPU time, which a 2-core machine can judge where wall-clock ratios
//! cannot: *payload bytes the replica acknowledged per CPU-second* of every process involved,
//! for a repliq catch-up and for a raw tonic stream of the same bytes in the same run.
//!
//! * repliq: the primary's journal is filled first (by the driver, not counted); then a
//!   `repliq-primary` child process starts [`EmbeddedReplication`] on it and runs until the
//!   replica acknowledged every record. Counted: that whole child process (replication thread,
//!   tail watcher, everything) from just before `start` to the last acknowledgement, and the
//!   whole replica process from before the primary starts until [`SETTLE`] after the last
//!   acknowledgement (so the replica's trailing background sync is included).
//! * raw tonic ([`super::tonic_raw::run_cost`]): the sending thread and the whole sink process
//!   over the same span, with the same settling time.
//!
//! Bytes are payload bytes (messages × message size) on both sides: repliq ships each record
//! with its header and padding, which is part of its cost.

use std::sync::Arc;
use std::time::Duration;

use repliq::replication::EmbeddedReplication;

use super::Outcome;
use super::replicas::{Acks, Replicas};
use super::repliq::{enqueue, options};
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{deadline, now_ns};
use crate::cpu::{Cpu, CpuCost};
use crate::msg::BenchMsg;
use crate::stats::Throughput;

/// How long after the last acknowledgement the receiving process's CPU is still counted: a
/// replica of an asynchronous primary syncs in the background within 200 ms of applying.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The catch-up of `count` messages of `size` bytes to one replica process, with its CPU; over
/// mutual TLS with the certificates in `tls` (handshakes and encryption on both sides counted).
pub fn catch_up(
    size: usize,
    count: u64,
    secs: f64,
    tls: Option<&str>,
) -> BoxResult<(Outcome, CpuCost)> {
    let mut replicas = Replicas::spawn(1, secs, tls)?;
    let primary_dir = replicas.primary_dir();
    {
        let mut q = options(count, size).create::<BenchMsg>(&primary_dir)?;
        let mut m = BenchMsg::of_size(size);
        let fill_end = deadline(secs * 2.0 + 5.0);
        for i in 0..count {
            m.seq = i;
            enqueue(&mut q, &m, fill_end)?;
        }
        // Setup, not replication: the next segment's file may be prepared in the background.
        q.warm_up(Duration::from_secs(10));
    }
    let replica0 = replicas.cpu()?;
    let cfg = ChildCfg {
        name: primary_dir.display().to_string(),
        name2: replicas.addrs.join(","),
        count,
        size,
        cpu: None,
        latency: false,
        secs_limit: secs * 2.0 + 5.0,
        extra: 0,
        events: None,
        tls: tls.map(str::to_owned),
    };
    let primary = child::spawn("repliq-primary", &cfg)?;
    let report = primary.wait_report(Duration::from_secs_f64(secs * 3.0 + 20.0))?;
    std::thread::sleep(SETTLE);
    let replica = replicas.cpu()?;
    let replica = replica[0].since(replica0[0]);
    let acked = report.received;
    let cost = CpuCost {
        bytes: acked * size as u64,
        parts: vec![
            ("primary process".into(), report.cpu),
            ("replica process".into(), replica),
        ],
    };
    let outcome = Outcome {
        latency: None,
        throughput: Some(Throughput::new(
            acked,
            size,
            report.last_ns.saturating_sub(report.start_ns),
        )),
        sent: count,
        note: Some(if acked >= count {
            format!("catch-up of {count} messages; CPU: {}", cost.breakdown())
        } else {
            format!("the replica acknowledged {acked} of {count} within the time limit")
        }),
        memory: None,
    };
    Ok((outcome, cost))
}

/// Child: the primary side of a replication run in a process of its own, so its whole-process
/// CPU time is replication's. Replicates the queue in `name` to the replicas in `name2`
/// (comma-separated `name=host:port`), synchronously with that many acknowledgements when
/// `extra` > 0, until each replica acknowledged `count` records or `secs_limit` passed; over
/// mutual TLS when `tls` names the run's certificates.
pub fn child_primary(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let secondaries: Vec<&str> = cfg.name2.split(',').filter(|s| !s.is_empty()).collect();
    let mode = if cfg.extra > 0 {
        repliq::ReplicationMode::Synchronous
    } else {
        repliq::ReplicationMode::Asynchronous
    };
    let acks = Arc::new(Acks::default());
    let mut opts = super::repliq::primary_options(mode, cfg.tls.as_deref()).observer(acks.clone());
    if cfg.extra > 0 {
        opts = opts.required_acks(usize::try_from(cfg.extra)?);
    }
    let cpu0 = Cpu::of_process();
    let start_ns = now_ns();
    let replication = EmbeddedReplication::start(&cfg.name, "bench", &secondaries, opts)?;
    let acked = acks.wait_all(secondaries.len(), cfg.count, deadline(cfg.secs_limit));
    let last_ns = acks.last_ns();
    let cpu = Cpu::of_process().since(cpu0);
    drop(replication);
    Ok(ChildReport {
        received: acked,
        last_ns,
        start_ns,
        cpu,
        ..ChildReport::default()
    })
}
