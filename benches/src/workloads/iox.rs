//! Peer: iceoryx2 publish/subscribe between two processes (`ipc::Service`, `[u8]` slice
//! payloads, no overflow: the publisher retries until delivered). The publisher copies the
//! payload into a loaned shared-memory sample; the subscriber reads it in place.

use std::sync::atomic::{AtomicU64, Ordering};

use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;

use super::{Kind, Outcome, Spec, System, cut_note, on_cpu, stamp, unstamp};
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{Pacer, cpu_pair, deadline, now_ns};
use crate::stats::{Recorder, Throughput};

const BUFFER: usize = 1024;

/// The iceoryx2 peer.
#[derive(Debug, Default)]
pub struct Iceoryx2;

fn err(e: impl std::fmt::Debug) -> Box<dyn std::error::Error + Send + Sync> {
    format!("iceoryx2: {e:?}").into()
}

fn quiet() {
    set_log_level(LogLevel::Error);
}

fn node() -> BoxResult<Node<ipc::Service>> {
    quiet();
    NodeBuilder::new().create::<ipc::Service>().map_err(err)
}

fn service(node: &Node<ipc::Service>, name: &str) -> BoxResult<PubSub<ipc::Service, [u8], ()>> {
    let name: ServiceName = name.try_into().map_err(err)?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(BUFFER)
        .enable_safe_overflow(false)
        .open_or_create()
        .map_err(err)
}

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "repliq-bench/{}/{tag}/{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl System for Iceoryx2 {
    fn name(&self) -> &'static str {
        "iceoryx2"
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        match spec.kind {
            Kind::PingPong => pingpong(spec),
            Kind::OneWay { rate } => one_way(spec, rate, true),
            Kind::Throughput => one_way(spec, 0, false),
        }
    }
}

fn cfg(spec: &Spec, name: String, name2: String, latency: bool) -> ChildCfg {
    ChildCfg {
        name,
        name2,
        count: spec.count,
        size: spec.size,
        cpu: cpu_pair().1,
        latency,
        secs_limit: spec.secs_limit + 5.0,
        extra: 0,
    }
}

fn one_way(spec: &Spec, rate: u64, latency: bool) -> BoxResult<Outcome> {
    let name = unique("oneway");
    let proc = child::spawn("iox-read", &cfg(spec, name.clone(), String::new(), latency))?;
    proc.wait_ready(spec.timeout())?;
    let (start, sent) = on_cpu(cpu_pair().0, || -> BoxResult<(u64, u64)> {
        let node = node()?;
        let svc = service(&node, &name)?;
        let publisher = svc
            .publisher_builder()
            .initial_max_slice_len(spec.size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err)?;
        let mut buf = vec![0xA5u8; spec.size];
        let pacer = Pacer::new(rate);
        let end = deadline(spec.secs_limit) + 1_000_000;
        let start = pacer.intended(0);
        let mut i = 0;
        while i < spec.count {
            let ts = if latency { pacer.wait(i) } else { now_ns() };
            stamp(&mut buf, ts, i);
            let sample = publisher.loan_slice_uninit(spec.size).map_err(err)?;
            sample.write_from_slice(&buf).send().map_err(err)?;
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        // The end marker: a zero-length sample.
        let sample = publisher.loan_slice_uninit(0).map_err(err)?;
        sample.write_from_slice(&[]).send().map_err(err)?;
        Ok((start, i))
    })?;
    let report = proc.wait_report(spec.timeout())?;
    if report.received != sent {
        return Err(format!("iceoryx2 subscriber got {} of {sent}", report.received).into());
    }
    Ok(Outcome {
        latency: report.latency,
        throughput: (!latency)
            .then(|| Throughput::new(sent, spec.size, report.last_ns.saturating_sub(start))),
        sent,
        note: cut_note(sent, spec.count),
    })
}

/// Child: subscribes and reads until the zero-length end marker.
pub fn child_read(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let node = node()?;
    let svc = service(&node, &cfg.name)?;
    let sub = svc
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(err)?;
    let end = deadline(cfg.secs_limit);
    let mut rec = Recorder::new();
    let mut n = 0u64;
    let mut last = now_ns();
    child::ready();
    let mut spins = 0u32;
    loop {
        match sub.receive().map_err(err)? {
            Some(sample) => {
                let p = sample.payload();
                if p.is_empty() {
                    break;
                }
                last = now_ns();
                let (ts, _) = unstamp(p);
                if cfg.latency {
                    rec.record(last.saturating_sub(ts));
                }
                std::hint::black_box(p[p.len() - 1]);
                n += 1;
            }
            None => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) && now_ns() > end {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    Ok(ChildReport {
        received: n,
        latency: cfg.latency.then(|| rec.summary()),
        last_ns: last,
    })
}

fn pingpong(spec: &Spec) -> BoxResult<Outcome> {
    let ping = unique("ping");
    let pong = unique("pong");
    let proc = child::spawn("iox-pong", &cfg(spec, ping.clone(), pong.clone(), false))?;
    proc.wait_ready(spec.timeout())?;
    let (rec, sent) = on_cpu(cpu_pair().0, || -> BoxResult<(Recorder, u64)> {
        let node = node()?;
        let ping = service(&node, &ping)?;
        let pong = service(&node, &pong)?;
        let publisher = ping
            .publisher_builder()
            .initial_max_slice_len(spec.size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err)?;
        let sub = pong
            .subscriber_builder()
            .buffer_size(BUFFER)
            .create()
            .map_err(err)?;
        // Let the child's publisher and subscriber connect: one untimed round trip first.
        let mut buf = vec![0xA5u8; spec.size];
        let mut rec = Recorder::new();
        let end = deadline(spec.secs_limit);
        let mut i = 0;
        while i <= spec.count {
            let t0 = now_ns();
            stamp(&mut buf, t0, i);
            let sample = publisher.loan_slice_uninit(spec.size).map_err(err)?;
            sample.write_from_slice(&buf).send().map_err(err)?;
            loop {
                if let Some(s) = sub.receive().map_err(err)? {
                    std::hint::black_box(s.payload()[0]);
                    break;
                }
                if now_ns() > end + 5_000_000_000 {
                    return Err("iceoryx2 ping-pong: no answer".into());
                }
                std::hint::spin_loop();
            }
            if i > 0 {
                rec.record(now_ns() - t0);
            }
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        let sample = publisher.loan_slice_uninit(0).map_err(err)?;
        sample.write_from_slice(&[]).send().map_err(err)?;
        Ok((rec, i.saturating_sub(1)))
    })?;
    proc.wait_report(spec.timeout())?;
    Ok(Outcome {
        latency: Some(rec.summary()),
        throughput: None,
        sent,
        note: cut_note(sent, spec.count),
    })
}

/// Child: echoes every ping on the pong service until the end marker.
pub fn child_pong(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let node = node()?;
    let ping = service(&node, &cfg.name)?;
    let pong = service(&node, &cfg.name2)?;
    let sub = ping
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(err)?;
    let publisher = pong
        .publisher_builder()
        .initial_max_slice_len(cfg.size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(err)?;
    let end = deadline(cfg.secs_limit);
    let mut n = 0;
    child::ready();
    let mut spins = 0u32;
    loop {
        match sub.receive().map_err(err)? {
            Some(sample) => {
                let p = sample.payload();
                if p.is_empty() {
                    break;
                }
                let out = publisher.loan_slice_uninit(p.len()).map_err(err)?;
                out.write_from_slice(p).send().map_err(err)?;
                n += 1;
            }
            None => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) && now_ns() > end {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    Ok(ChildReport {
        received: n,
        latency: None,
        last_ns: now_ns(),
    })
}
