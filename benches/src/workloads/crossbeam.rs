//! Reference: an in-process bounded crossbeam channel between two threads, each message an
//! owned `Vec<u8>` (what "sending a message" costs when there is no process boundary and
//! no persistence).

use crossbeam_channel::{RecvTimeoutError, bounded};
use std::time::Duration;

use super::{Kind, Outcome, Spec, System, cut_note, on_cpu, stamp, unstamp};
use crate::BoxResult;
use crate::clock::{Pacer, cpu_pair, deadline, now_ns};
use crate::stats::{Recorder, Throughput};

/// The crossbeam reference.
#[derive(Debug, Default)]
pub struct Crossbeam;

impl System for Crossbeam {
    fn name(&self) -> &'static str {
        "crossbeam"
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        let (cpu_a, cpu_b) = cpu_pair();
        let spec = *spec;
        match spec.kind {
            Kind::PingPong => {
                let (to_b, from_a) = bounded::<Vec<u8>>(1);
                let (to_a, from_b) = bounded::<Vec<u8>>(1);
                let echo = std::thread::spawn(move || {
                    crate::clock::pin(cpu_b);
                    while let Ok(m) = from_a.recv() {
                        if to_a.send(m).is_err() {
                            break;
                        }
                    }
                });
                let (rec, sent) = on_cpu(cpu_a, move || {
                    let mut rec = Recorder::new();
                    let end = deadline(spec.secs_limit);
                    let mut buf = vec![0u8; spec.size];
                    let mut i = 0;
                    while i < spec.count {
                        let t0 = now_ns();
                        stamp(&mut buf, t0, i);
                        to_b.send(buf)?;
                        buf = from_b.recv_timeout(spec.timeout())?;
                        rec.record(now_ns() - t0);
                        i += 1;
                        if i.is_multiple_of(1024) && now_ns() > end {
                            break;
                        }
                    }
                    BoxResult::Ok((rec, i))
                })?;
                echo.join().map_err(|_| "echo thread panicked")?;
                Ok(Outcome {
                    latency: Some(rec.summary()),
                    throughput: None,
                    sent,
                    note: cut_note(sent, spec.count),
                    memory: None,
                })
            }
            Kind::OneWay { rate } => one_way(spec, rate, true, cpu_a, cpu_b),
            Kind::Throughput => one_way(spec, 0, false, cpu_a, cpu_b),
        }
    }
}

fn one_way(
    spec: Spec,
    rate: u64,
    latency: bool,
    cpu_a: Option<usize>,
    cpu_b: Option<usize>,
) -> BoxResult<Outcome> {
    let (tx, rx) = bounded::<Vec<u8>>(1024);
    let timeout = spec.timeout();
    let reader = std::thread::spawn(move || {
        crate::clock::pin(cpu_b);
        let mut rec = Recorder::new();
        let mut n = 0u64;
        let mut last = now_ns();
        loop {
            match rx.recv_timeout(timeout) {
                Ok(m) => {
                    last = now_ns();
                    let (ts, _) = unstamp(&m);
                    if latency {
                        rec.record(last.saturating_sub(ts));
                    }
                    std::hint::black_box(m[m.len() - 1]);
                    n += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        (rec, n, last)
    });
    let (start, sent) = on_cpu(cpu_a, move || {
        let pacer = Pacer::new(rate);
        let end = deadline(spec.secs_limit) + 1_000_000;
        let start = pacer.intended(0);
        let mut i = 0;
        while i < spec.count {
            let ts = if latency { pacer.wait(i) } else { now_ns() };
            let mut m = vec![0xA5u8; spec.size];
            stamp(&mut m, ts, i);
            if tx.send_timeout(m, Duration::from_secs(5)).is_err() {
                break;
            }
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        (start, i)
    });
    let (rec, n, last) = reader.join().map_err(|_| "reader thread panicked")?;
    if n != sent {
        return Err(format!("crossbeam reader got {n} of {sent}").into());
    }
    Ok(Outcome {
        latency: latency.then(|| rec.summary()),
        throughput: (!latency)
            .then(|| Throughput::new(sent, spec.size, last.saturating_sub(start))),
        sent,
        note: cut_note(sent, spec.count),
        memory: None,
    })
}
