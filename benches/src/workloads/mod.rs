//! The workloads and the systems they run against.
//!
//! Every system implements [`System`]; the driver asks each for the same [`Spec`]s (same sizes,
//! same rates, same counts) so rows of one table are comparable. Every load loop is bounded by
//! a message count *and* a time limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BoxResult;
use crate::stats::{Latency, Throughput};

pub mod crossbeam;
pub mod floor;
pub mod iox;
pub mod nats;
pub mod nats_r3;
pub mod redis;
pub mod remote;
pub mod repl_cost;
pub mod repl_instructions;
pub mod replicas;
pub mod repliq;
pub mod repliq_async;
pub mod repliq_r3;
pub mod rkyv_costs;
pub mod tls;
pub mod tonic_raw;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Kind {
    /// Round trip: A sends, B echoes, A measures.
    PingPong,
    /// Writer → reader one-way latency at a fixed rate (messages per second), measured from
    /// the intended send time.
    OneWay {
        /// Messages per second.
        rate: u64,
    },
    /// One producer → one consumer, as fast as possible.
    Throughput,
}

impl Kind {
    /// A short label for tables and file names.
    pub fn label(&self) -> String {
        match self {
            Kind::PingPong => "pingpong".into(),
            Kind::OneWay { rate } => format!("oneway@{}", rate_label(*rate)),
            Kind::Throughput => "throughput".into(),
        }
    }
}

/// `100000` → `100k`.
pub fn rate_label(rate: u64) -> String {
    if rate >= 1_000_000 && rate.is_multiple_of(1_000_000) {
        format!("{}M", rate / 1_000_000)
    } else if rate >= 1000 && rate.is_multiple_of(1000) {
        format!("{}k", rate / 1000)
    } else {
        rate.to_string()
    }
}

/// One measurement to make.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// What is measured.
    pub kind: Kind,
    /// Payload bytes per message (at least 16: timestamp and sequence number).
    pub size: usize,
    /// Messages to send, at most.
    pub count: u64,
    /// Stop sending after this many seconds even if `count` is not reached.
    pub secs_limit: f64,
}

impl Spec {
    /// `count` messages of `size` bytes, sent flat out for at most `secs` seconds, in one
    /// process (per-call cost).
    pub fn cost(size: usize, count: u64, secs: f64) -> Self {
        Spec {
            kind: Kind::Throughput,
            size,
            count,
            secs_limit: secs,
        }
    }

    /// How long to wait for the consumer side before giving up.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.secs_limit * 3.0 + 10.0)
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Latency percentiles (round trip for ping-pong).
    pub latency: Option<Latency>,
    /// Throughput.
    pub throughput: Option<Throughput>,
    /// Messages sent.
    pub sent: u64,
    /// Anything a reader of the table must know.
    pub note: Option<String>,
    /// Resident memory of the processes beyond their mapped file pages (repliq throughput).
    pub memory: Option<Memory>,
}

/// A system under test.
pub trait System {
    /// Its name in tables and plots.
    fn name(&self) -> &'static str;
    /// `Err(reason)` if the system does not take part in this kind of measurement.
    fn supports(&self, _kind: Kind) -> Result<(), String> {
        Ok(())
    }
    /// Runs one measurement.
    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome>;
}

/// Writes the timestamp and the sequence number into the head of a payload.
pub fn stamp(buf: &mut [u8], ts: u64, seq: u64) {
    buf[..8].copy_from_slice(&ts.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
}

/// Reads the timestamp and the sequence number from the head of a payload.
pub fn unstamp(buf: &[u8]) -> (u64, u64) {
    let ts = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    (ts, seq)
}

/// A note for a sender that stopped at its time limit before sending everything.
pub fn cut_note(sent: u64, wanted: u64) -> Option<String> {
    (sent < wanted).then(|| format!("time limit: sent {sent} of {wanted}"))
}

/// A producer-only load: `producers` producers, each on its own thread and connection, send
/// `count` messages of `size` bytes in all (an equal share each) and wait for the server's
/// acknowledgements; nobody consumes. Bounded by `count` and by `secs` of sending.
#[derive(Debug, Clone, Copy)]
pub struct ProduceLoad {
    /// Payload bytes per message (at least 24).
    pub size: usize,
    /// Messages in all producers together, at most.
    pub count: u64,
    /// Stop sending after this many seconds.
    pub secs: f64,
    /// Producers, each with its own connection.
    pub producers: usize,
}

impl ProduceLoad {
    /// One producer's share of `count`.
    pub fn share(&self) -> u64 {
        (self.count / self.producers.max(1) as u64).max(1)
    }
}

/// Produce → acknowledge latency: one producer sends `count` messages of `size` bytes one at a
/// time at `rate` per second (at most `secs` seconds), each waiting for its acknowledgement,
/// timed from its intended send time.
#[derive(Debug, Clone, Copy)]
pub struct PacedLoad {
    /// Payload bytes per message (at least 24).
    pub size: usize,
    /// Messages per second.
    pub rate: u64,
    /// Messages to send, at most.
    pub count: u64,
    /// Stop sending after this many seconds.
    pub secs: f64,
}

/// What one producer of a [`ProduceLoad`] did.
#[derive(Debug, Clone, Copy)]
pub struct ProducerRun {
    /// Messages acknowledged.
    pub sent: u64,
    /// When it started sending (`CLOCK_MONOTONIC` ns).
    pub start_ns: u64,
    /// When its last acknowledgement arrived.
    pub last_ns: u64,
}

/// Runs `load.producers` producers on threads of their own: each first `connect`s (its own
/// runtime and connection, producer `i`), all wait until every one is connected, then each
/// runs `produce`. Throughput spans the first start to the last acknowledgement.
pub fn produce_in_parallel<C>(
    load: &ProduceLoad,
    connect: impl Fn(usize) -> BoxResult<C> + Sync,
    produce: impl Fn(C) -> BoxResult<ProducerRun> + Sync,
) -> BoxResult<Outcome> {
    let n = load.producers.max(1);
    let ready = std::sync::Barrier::new(n);
    let runs: Vec<BoxResult<ProducerRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (ready, connect, produce) = (&ready, &connect, &produce);
                s.spawn(move || {
                    let conn = connect(i);
                    // Every thread reaches the barrier, connected or not, so none waits forever.
                    ready.wait();
                    produce(conn?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("producer thread panicked".into()))
            })
            .collect()
    });
    let runs = runs.into_iter().collect::<BoxResult<Vec<_>>>()?;
    let sent: u64 = runs.iter().map(|r| r.sent).sum();
    let start = runs.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let last = runs.iter().map(|r| r.last_ns).max().unwrap_or(0);
    let wanted = load.share() * n as u64;
    Ok(Outcome {
        latency: None,
        throughput: Some(Throughput::new(sent, load.size, last.saturating_sub(start))),
        sent,
        note: cut_note(sent, wanted),
        memory: None,
    })
}

/// Runs `f` on a new thread pinned to `cpu` (threads inherit the affinity of their creator, so
/// the driver's own thread is never pinned).
pub fn on_cpu<R: Send>(cpu: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::clock::pin(cpu);
            f()
        })
        .join()
        .expect("benchmark thread panicked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut b = [0u8; 64];
        stamp(&mut b, 123, 456);
        assert_eq!(unstamp(&b), (123, 456));
    }

    #[test]
    fn labels() {
        assert_eq!(rate_label(100_000), "100k");
        assert_eq!(rate_label(1_000_000), "1M");
        assert_eq!(Kind::OneWay { rate: 10_000 }.label(), "oneway@10k");
    }
}

/// Resident memory of the two processes of a run beyond the file pages they map, from
/// `/proc/<pid>/status` at the end of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Consumer process: `RssAnon` (heap, stacks, anonymous mappings), bytes.
    pub consumer_anon_bytes: u64,
    /// Consumer process: `RssFile` + `RssShmem` (mapped journal and binary pages), bytes.
    pub consumer_file_bytes: u64,
    /// Producer: growth of the driver process's `RssAnon` from before the queue was created to
    /// the end of the run (the driver hosts the producer thread and much else), bytes.
    pub producer_anon_delta_bytes: i64,
    /// Producer: the driver process's `RssAnon` at the end of the run, bytes.
    pub producer_anon_bytes: u64,
}
