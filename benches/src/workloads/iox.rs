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

/// Sends 1-byte hello samples until one reaches a subscriber: samples sent before the
/// publisher has seen the subscriber reach nobody. Readers ignore 1-byte samples.
fn hello(
    publisher: &iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
) -> BoxResult<()> {
    let end = deadline(10.0);
    loop {
        let s = publisher.loan_slice_uninit(1).map_err(err)?;
        if s.write_from_slice(&[0]).send().map_err(err)? > 0 {
            return Ok(());
        }
        if now_ns() > end {
            return Err("iceoryx2: the subscriber never connected".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
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
        events: None,
        tls: None,
    }
}

fn one_way(spec: &Spec, rate: u64, latency: bool) -> BoxResult<Outcome> {
    let name = unique("oneway");
    let proc = child::spawn("iox-read", &cfg(spec, name.clone(), String::new(), latency))?;
    proc.wait_ready(spec.timeout())?;
    // The publisher must outlive the subscriber's reads: samples still queued when a
    // publisher goes away are dropped. So the producer thread waits for the report itself.
    let timeout = spec.timeout();
    let (start, sent, report) = on_cpu(
        cpu_pair().0,
        move || -> BoxResult<(u64, u64, ChildReport)> {
            let node = node()?;
            let svc = service(&node, &name)?;
            let publisher = svc
                .publisher_builder()
                .initial_max_slice_len(spec.size)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .map_err(err)?;
            hello(&publisher)?;
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
            let report = proc.wait_report(timeout)?;
            Ok((start, i, report))
        },
    )?;
    // Observed: with RetryUntilDelivered and overflow disabled, flat-out runs still lose a few
    // per cent of samples here (not yet understood). Report what was delivered, and say so.
    let mut note = cut_note(sent, spec.count);
    if report.received != sent {
        let lost = format!(
            "subscriber received {} of {sent} ({} lost); rate counts received only",
            report.received,
            sent - report.received.min(sent)
        );
        note = Some(match note {
            Some(n) => format!("{n}; {lost}"),
            None => lost,
        });
    }
    Ok(Outcome {
        latency: report.latency,
        throughput: (!latency).then(|| {
            Throughput::new(
                report.received,
                spec.size,
                report.last_ns.saturating_sub(start),
            )
        }),
        sent,
        note,
        memory: None,
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
                if p.len() == 1 {
                    continue;
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
        ..ChildReport::default()
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
        hello(&publisher)?;
        // One untimed round trip first.
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
        memory: None,
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
                if p.len() == 1 {
                    continue;
                }
                // Until the driver's subscriber is seen, an answer reaches nobody: resend.
                loop {
                    let out = publisher.loan_slice_uninit(p.len()).map_err(err)?;
                    if out.write_from_slice(p).send().map_err(err)? > 0 || now_ns() > end {
                        break;
                    }
                }
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
        ..ChildReport::default()
    })
}
