//! repliq with three copies, next to NATS JetStream R3 (`nats_r3`): a producer in the driver
//! process enqueues into a journal replicated (in-process [`EmbeddedReplication`]) to two
//! replica processes over loopback gRPC, synchronously (`required_acks` 2: each `enqueue`
//! returns once both replicas hold the message durably; or 1: two of three copies, as a NATS
//! R3 quorum) or asynchronously (the producer runs flat out; the run ends when both replicas
//! acknowledged everything).

use std::sync::Arc;
use std::time::Duration;

use repliq::ReplicationMode;
use repliq::replication::{EmbeddedReplication, PrimaryOptions};

use super::replicas::{Acks, Replicas};
use super::repliq::{enqueue, options};
use super::{Outcome, cut_note};
use crate::BoxResult;
use crate::clock::{deadline, now_ns};
use crate::cpu::{Cpu, CpuCost};
use crate::msg::BenchMsg;
use crate::stats::{Recorder, Throughput};

/// Replicas of the three-copy rows.
pub const REPLICAS: usize = 2;

/// `count` messages of `size` bytes, at most `secs` of sending; in synchronous mode each
/// `enqueue` waits for `required_acks` replicas. Latency (synchronous mode): each
/// `enqueue`'s duration. Throughput: messages over the time from the first `enqueue` to the last
/// acknowledgement of both replicas. CPU: the driver process (producer, replication thread,
/// tail watcher) and both replica processes, after one warm-up message both replicas
/// acknowledged (connections made) until [`super::repl_cost::SETTLE`] after the last
/// acknowledgement.
pub fn run(
    size: usize,
    count: u64,
    secs: f64,
    mode: ReplicationMode,
    required_acks: usize,
) -> BoxResult<(Outcome, CpuCost)> {
    let sync = matches!(mode, ReplicationMode::Synchronous);
    let mut replicas = Replicas::spawn(REPLICAS, secs, None)?;
    let mut q = options(count + 1, size).create::<BenchMsg>(replicas.primary_dir())?;
    q.warm_up(Duration::from_secs(10));
    let acks = Arc::new(Acks::default());
    let mut opts = PrimaryOptions::new("bench", Vec::new(), mode).observer(acks.clone());
    if sync {
        opts = opts.required_acks(required_acks);
    }
    let addrs: Vec<&str> = replicas.addrs.iter().map(String::as_str).collect();
    let replication = EmbeddedReplication::start(q.path(), "bench", &addrs, opts)?;
    let mut m = BenchMsg::of_size(size);
    let give_up = deadline(secs * 2.0 + 10.0);
    // Warm-up: connections and `Hello`s are not what the rows compare.
    enqueue(&mut q, &m, give_up)?;
    if acks.wait_all(REPLICAS, 1, deadline(10.0)) < 1 {
        return Err("the replicas did not acknowledge the warm-up message within 10 s".into());
    }
    let replicas0 = replicas.cpu()?;
    let driver0 = Cpu::of_process();
    let end = deadline(secs);
    let mut call = Recorder::new();
    let start = now_ns();
    let mut sent = 0;
    while sent < count {
        m.ts = now_ns();
        m.seq = sent + 1;
        enqueue(&mut q, &m, give_up)?;
        if sync {
            call.record(now_ns() - m.ts);
        }
        sent += 1;
        if sent.is_multiple_of(64) && now_ns() > end {
            break;
        }
    }
    let acked = acks.wait_all(REPLICAS, sent + 1, give_up).saturating_sub(1);
    let last = acks.last_ns();
    let driver = Cpu::of_process().since(driver0);
    std::thread::sleep(super::repl_cost::SETTLE);
    let reps = replicas.cpu()?;
    drop(replication);
    drop(q);
    let mut parts = vec![(
        "driver (producer + primary's replication threads)".to_owned(),
        driver,
    )];
    for (i, (now, before)) in reps.iter().zip(&replicas0).enumerate() {
        parts.push((format!("replica {i}"), now.since(*before)));
    }
    let cost = CpuCost {
        bytes: acked * size as u64,
        parts,
    };
    let mut note = cut_note(sent, count);
    if acked < sent {
        let behind = format!("the replicas acknowledged {acked} of {sent} in time");
        note = Some(note.map_or(behind.clone(), |n| format!("{n}; {behind}")));
    }
    Ok((
        Outcome {
            latency: sync.then(|| call.summary()),
            throughput: Some(Throughput::new(acked, size, last.saturating_sub(start))),
            sent,
            note,
            memory: None,
        },
        cost,
    ))
}
