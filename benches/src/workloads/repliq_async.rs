//! repliq's asynchronous handle, `ReplicatedQueueImpl<BenchMsg>`, next to the synchronous
//! `JournalQueue` of [`super::repliq`], on a tokio current-thread runtime (`repliq-async-ct`)
//! or a multi-thread runtime with 2 workers (`repliq-async-mt`).
//!
//! * enqueue cost: per-call latency of `enqueue_ref(&m).await` in one process, against
//!   `JournalQueue::enqueue(&m)` on a fresh queue of the same options (see [`enqueue_cost`]).
//! * one-way latency and throughput: the producer task awaits `enqueue_ref`, the reader
//!   process's task awaits `recv()` (woken through repliq's waiter thread); same queue
//!   options, same feed, same tally as the synchronous rows.
//!
//! Every runtime's threads are pinned to the side's CPU, as the synchronous rows' threads are.

use std::future::Future;

use repliq::ReplicatedQueueImpl;

use super::repliq::{Feed, Place, Tally, one_way_with, options, queue_dir, reader_options};
use super::{Kind, Outcome, Spec, System, on_cpu};
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{cpu_pair, now_ns, pin};
use crate::msg::BenchMsg;
use crate::stats::Recorder;

/// The tokio runtime an async handle runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `new_current_thread`: the task runs on the thread that calls `block_on`.
    CurrentThread,
    /// `new_multi_thread` with 2 workers: the task runs on a worker.
    MultiThread,
}

impl Flavor {
    /// Both flavors, in report order.
    pub const ALL: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

    /// The system's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "repliq-async-ct",
            Flavor::MultiThread => "repliq-async-mt",
        }
    }

    fn code(self) -> u64 {
        match self {
            Flavor::CurrentThread => 0,
            Flavor::MultiThread => 1,
        }
    }

    fn from_code(code: u64) -> BoxResult<Self> {
        match code {
            0 => Ok(Flavor::CurrentThread),
            1 => Ok(Flavor::MultiThread),
            other => Err(format!("unknown runtime flavor {other}").into()),
        }
    }

    /// A runtime with every driver enabled (as `#[tokio::main]`), its threads pinned to `cpu`.
    fn runtime(self, cpu: Option<usize>) -> BoxResult<tokio::runtime::Runtime> {
        let mut b = match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
        };
        Ok(b.enable_all()
            .on_thread_start(move || {
                pin(cpu);
            })
            .build()?)
    }
}

/// Runs `fut` as a task spawned on a fresh runtime of `flavor` whose threads (and the thread
/// that blocks on it) are pinned to `cpu`.
pub fn run_on<F>(flavor: Flavor, cpu: Option<usize>, fut: F) -> BoxResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    on_cpu(cpu, move || {
        let rt = flavor.runtime(cpu)?;
        Ok(rt.block_on(async move { tokio::spawn(fut).await })?)
    })
}

/// The async handle on one runtime flavor, as a system of the one-way and throughput tables.
#[derive(Debug)]
pub struct RepliqAsync(pub Flavor);

impl System for RepliqAsync {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn supports(&self, kind: Kind) -> Result<(), String> {
        match kind {
            Kind::PingPong => Err(
                "not measured: the async handle is measured for enqueue cost, \
                 one-way latency and throughput"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        match spec.kind {
            Kind::OneWay { rate } => one_way(spec, self.0, rate, true),
            Kind::Throughput | Kind::PingPong => one_way(spec, self.0, 0, false),
        }
    }
}

/// One producer task → one reader process, both on async handles on runtimes of `flavor`.
fn one_way(spec: &Spec, flavor: Flavor, rate: u64, latency: bool) -> BoxResult<Outcome> {
    let spec = *spec;
    let reader = ("repliq-async-read", flavor.code());
    one_way_with(&spec, Place::Disk, 1, reader, latency, None, move |q| {
        let q = ReplicatedQueueImpl::from_queue(q)?;
        run_on(flavor, cpu_pair().0, async move {
            let mut feed = Feed::new(&spec, rate, latency);
            let start = feed.start();
            while let Some(m) = feed.next() {
                q.enqueue_ref(m).await?;
            }
            let sent = feed.sent();
            q.enqueue_ref(feed.finish()).await?;
            BoxResult::Ok((start, sent))
        })?
    })
    .map(|(o, _)| o)
}

/// Child: a task awaiting `recv()` on an async handle until the end marker.
pub fn child_read(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let flavor = Flavor::from_code(cfg.extra)?;
    let q =
        ReplicatedQueueImpl::<BenchMsg>::open_with(&cfg.name, reader_options(false, &cfg.name2))?;
    let latency = cfg.latency;
    run_on(flavor, cfg.cpu, async move {
        let mut tally = Tally::new(latency);
        child::ready();
        loop {
            let m = q.recv().await?;
            if !tally.take(m.ts, m.seq) {
                break;
            }
        }
        BoxResult::Ok(tally.report())
    })?
}

/// Enqueue cost in one process: per-call latency of `enqueue_ref(&m).await` (a task on a
/// runtime of `flavor`, pinned to the producer CPU), and throughput. The queue has room for
/// every message, so none is ever full; compare with [`super::repliq::durability`] in
/// `PageCache` mode, which times `JournalQueue::enqueue` on the same options.
pub fn enqueue_cost(flavor: Flavor, size: usize, count: u64, secs: f64) -> BoxResult<Outcome> {
    let dir = queue_dir(Place::Disk)?;
    let q = ReplicatedQueueImpl::<BenchMsg>::create_with(dir.path(), options(count, size))?;
    let spec = Spec::cost(size, count, secs);
    run_on(flavor, cpu_pair().0, async move {
        let mut feed = Feed::new(&spec, 0, false);
        let mut rec = Recorder::new();
        while let Some(m) = feed.next() {
            let t0 = now_ns();
            q.enqueue_ref(m).await?;
            rec.record(now_ns() - t0);
        }
        BoxResult::Ok(feed.cost_outcome(&rec))
    })?
}
