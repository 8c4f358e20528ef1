//! The floor: two processes and a shared mapping, one atomic store per message, no repliq code.
//!
//! * ping-pong: one cache line; the driver stores `2i+1`, the child answers `2i+2`.
//! * one-way and throughput: a ring of slots; the writer copies the payload into a slot and
//!   publishes it with one `Release` store of its sequence number.

use std::sync::atomic::Ordering;

use super::{Kind, Outcome, Spec, System, cut_note, on_cpu, stamp};
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{Pacer, cpu_pair, deadline, now_ns};
use crate::shm::{Ring, SharedMap};
use crate::stats::{Recorder, Throughput};

const STOP: u64 = u64::MAX;
/// Ring slots: enough to ride out scheduling hiccups at 1 M msg/s.
const SLOTS: u64 = 1024;
/// Offset of the "producer is done, this many were sent + 1" word.
const DONE_OFF: usize = 64;

/// The floor system.
#[derive(Debug, Default)]
pub struct Floor;

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "repliq-bench-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl System for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        match spec.kind {
            Kind::PingPong => pingpong(spec),
            Kind::OneWay { rate } => ring(spec, rate, true),
            Kind::Throughput => ring(spec, 0, false),
        }
    }
}

fn pingpong(spec: &Spec) -> BoxResult<Outcome> {
    let (cpu_a, cpu_b) = cpu_pair();
    let map = SharedMap::create(&unique("pp"), 4096)?;
    let cfg = ChildCfg {
        name: map.path().display().to_string(),
        name2: String::new(),
        count: spec.count,
        size: spec.size,
        cpu: cpu_b,
        latency: false,
        secs_limit: spec.secs_limit + 5.0,
        extra: 0,
        events: None,
        tls: None,
    };
    let proc = child::spawn("floor-pong", &cfg)?;
    proc.wait_ready(spec.timeout())?;
    let (rec, sent) = on_cpu(cpu_a, || {
        let cell = map.atomic(0);
        let mut rec = Recorder::new();
        let end = deadline(spec.secs_limit);
        let mut i = 0;
        'outer: while i < spec.count {
            let t0 = now_ns();
            cell.store(2 * i + 1, Ordering::Release);
            let mut spins = 0u32;
            while cell.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins == 0 && now_ns() > end {
                    break 'outer;
                }
            }
            rec.record(now_ns() - t0);
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        cell.store(STOP, Ordering::Release);
        (rec, i)
    });
    proc.wait_report(spec.timeout())?;
    Ok(Outcome {
        latency: Some(rec.summary()),
        throughput: None,
        sent,
        note: cut_note(sent, spec.count),
        memory: None,
    })
}

/// Child side of the ping-pong.
pub fn child_pong(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let map = SharedMap::open(cfg.name.as_ref())?;
    let cell = map.atomic(0);
    let end = deadline(cfg.secs_limit);
    child::ready();
    let mut i = 0u64;
    loop {
        let mut spins = 0u32;
        let v = loop {
            let v = cell.load(Ordering::Acquire);
            if v == 2 * i + 1 || v == STOP {
                break v;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins == 0 && now_ns() > end {
                break STOP;
            }
        };
        if v == STOP {
            break;
        }
        cell.store(2 * i + 2, Ordering::Release);
        i += 1;
    }
    Ok(ChildReport {
        received: i,
        latency: None,
        last_ns: now_ns(),
        ..ChildReport::default()
    })
}

fn ring(spec: &Spec, rate: u64, latency: bool) -> BoxResult<Outcome> {
    let (cpu_a, cpu_b) = cpu_pair();
    let ring = Ring::new(spec.size, SLOTS);
    let map = SharedMap::create(&unique("ring"), ring.bytes())?;
    let cfg = ChildCfg {
        name: map.path().display().to_string(),
        name2: String::new(),
        count: spec.count,
        size: spec.size,
        cpu: cpu_b,
        latency,
        secs_limit: spec.secs_limit + 5.0,
        extra: SLOTS,
        events: None,
        tls: None,
    };
    let proc = child::spawn("floor-read", &cfg)?;
    proc.wait_ready(spec.timeout())?;
    let (start, sent) = on_cpu(cpu_a, || {
        let consumed = map.atomic(ring.consumed_off());
        let mut buf = vec![0xA5u8; spec.size];
        let pacer = Pacer::new(rate);
        let end = deadline(spec.secs_limit) + 1_000_000;
        let start = pacer.intended(0);
        let mut i = 0;
        'outer: while i < spec.count {
            let ts = if latency { pacer.wait(i) } else { now_ns() };
            let mut spins = 0u32;
            while i - consumed.load(Ordering::Acquire) >= ring.slots {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins == 0 && now_ns() > end {
                    break 'outer;
                }
            }
            stamp(&mut buf, ts, i);
            let off = ring.slot_off(i);
            map.write(off + 8, &buf);
            map.atomic(off).store(i + 1, Ordering::Release);
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        map.atomic(DONE_OFF).store(i + 1, Ordering::Release);
        (start, i)
    });
    let report = proc.wait_report(spec.timeout())?;
    if report.received != sent {
        return Err(format!("floor reader got {} of {sent}", report.received).into());
    }
    Ok(Outcome {
        latency: report.latency,
        throughput: (!latency)
            .then(|| Throughput::new(sent, spec.size, report.last_ns.saturating_sub(start))),
        sent,
        note: cut_note(sent, spec.count),
        memory: None,
    })
}

/// Child side of the ring: reads every message, records latency or just counts.
pub fn child_read(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let ring = Ring::new(cfg.size, cfg.extra);
    let map = SharedMap::open(cfg.name.as_ref())?;
    let consumed = map.atomic(ring.consumed_off());
    let done = map.atomic(DONE_OFF);
    let end = deadline(cfg.secs_limit);
    let mut rec = Recorder::new();
    let mut sink = 0u8;
    child::ready();
    let mut i = 0u64;
    let mut last = now_ns();
    'outer: while i < cfg.count {
        let off = ring.slot_off(i);
        let seq = map.atomic(off);
        let mut spins = 0u32;
        while seq.load(Ordering::Acquire) != i + 1 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins & 0xff == 0 {
                let d = done.load(Ordering::Acquire);
                if d != 0 && i + 1 >= d {
                    break 'outer;
                }
                if spins == 0 && now_ns() > end {
                    break 'outer;
                }
            }
        }
        let ts = map.read_u64(off + 8);
        sink ^= map.read_u8(off + 8 + cfg.size - 1);
        last = now_ns();
        if cfg.latency {
            rec.record(last.saturating_sub(ts));
        }
        i += 1;
        if i.is_multiple_of(32) {
            consumed.store(i, Ordering::Release);
        }
    }
    consumed.store(i, Ordering::Release);
    std::hint::black_box(sink);
    Ok(ChildReport {
        received: i,
        latency: cfg.latency.then(|| rec.summary()),
        last_ns: last,
        ..ChildReport::default()
    })
}
