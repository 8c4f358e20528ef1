//! repliq itself: a `JournalQueue<BenchMsg>` in a directory on disk (page cache), written by one
//! process and read by another.
//!
//! Two readers are measured: `repliq` (the default: crc32c of each record checked, message
//! validated by `read`) and `repliq-unchecked` (`verify_checksums(false)`, `read_bytes` +
//! `access_unchecked`), which shows what validation costs.

use std::path::Path;
use std::time::Duration;

use repliq::{Durability, JournalQueue, QueueError, QueueOptions};

use super::{Kind, Outcome, Spec, System, cut_note, on_cpu};
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{Pacer, cpu_pair, deadline, now_ns};
use crate::msg::BenchMsg;
use crate::stats::{Recorder, Throughput};

/// The cursor shared by the benchmark's producer handle and its reader.
pub(crate) const CURSOR: &str = "bench";
/// The sequence number of the message that ends a run.
pub(crate) const END: u64 = u64::MAX;

/// repliq, with checked or unchecked reads, its journal in one of three places.
#[derive(Debug)]
pub struct Repliq {
    /// Skip checksum verification and validation on the read side.
    pub unchecked: bool,
    /// Where the journal lives.
    pub place: Place,
}

/// Where a benchmark queue's journal lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The temporary directory: a disk file system's page cache.
    Disk,
    /// `/dev/shm`, like the floor's mapping (tmpfs, 4 KiB pages): separates the file system's
    /// page-fault cost from repliq's own.
    Tmpfs,
    /// A tmpfs mounted with `huge=within_size` (2 MiB pages; [`crate::hugetmpfs`]).
    HugeTmpfs,
}

/// A fresh queue directory in `place`.
pub(crate) fn queue_dir(place: Place) -> BoxResult<tempfile::TempDir> {
    Ok(match place {
        Place::Disk => tempfile::tempdir()?,
        Place::Tmpfs => tempfile::tempdir_in(crate::shm::shm_dir())?,
        Place::HugeTmpfs => tempfile::tempdir_in(crate::hugetmpfs::dir()?)?,
    })
}

/// The row name of repliq with these read checks and journal place.
fn system_name(unchecked: bool, place: Place) -> &'static str {
    match (unchecked, place) {
        (false, Place::Disk) => "repliq",
        (true, Place::Disk) => "repliq-unchecked",
        (false, Place::Tmpfs) => "repliq-tmpfs",
        (true, Place::Tmpfs) => "repliq-unchecked-tmpfs",
        (false, Place::HugeTmpfs) => "repliq-hugetmpfs",
        (true, Place::HugeTmpfs) => "repliq-unchecked-hugetmpfs",
    }
}

/// Options of a benchmark queue: room for twice `spec_count` messages of `size` bytes, so a
/// producer never finds it full.
pub(crate) fn options(spec_count: u64, size: usize) -> QueueOptions {
    QueueOptions::new()
        .capacity(spec_count.saturating_mul(2).saturating_add(1024))
        .segment_size(64 << 20)
        .max_message_size(((size + 64) as u32).max(4096))
        .consumer(CURSOR)
        .prefault(true)
        // As a queue whose consumed messages need not be kept: segments every cursor passed are
        // deleted, or recycled into the next segment when no process maps them.
        .delete_consumed_segments(true)
}

/// Options of a reader handle on an existing benchmark queue.
pub(crate) fn reader_options(unchecked: bool, consumer: &str) -> QueueOptions {
    QueueOptions::new()
        .consumer(consumer)
        .verify_checksums(!unchecked)
        .prefault(true)
}

fn open_reader(dir: &str, unchecked: bool, consumer: &str) -> BoxResult<JournalQueue<BenchMsg>> {
    Ok(reader_options(unchecked, consumer).open::<BenchMsg>(dir)?)
}

/// The producer side of a run: the next message to send, stamped and paced, until `count` are
/// sent or the time limit passed; then the end marker.
#[derive(Debug)]
pub(crate) struct Feed {
    m: BenchMsg,
    pacer: Pacer,
    latency: bool,
    count: u64,
    /// Stop sending after this `CLOCK_MONOTONIC` time (ns).
    pub end: u64,
    i: u64,
}

impl Feed {
    /// A feed of `spec.count` messages of `spec.size` bytes at `rate` (0: flat out); with
    /// `latency` each carries its intended send time, else the time it was stamped. The
    /// schedule starts now (+1 ms when paced).
    pub fn new(spec: &Spec, rate: u64, latency: bool) -> Self {
        let pacer = Pacer::new(rate);
        Feed {
            m: BenchMsg::of_size(spec.size),
            pacer,
            latency,
            count: spec.count,
            end: deadline(spec.secs_limit) + 1_000_000,
            i: 0,
        }
    }

    /// The intended send time of the first message.
    pub fn start(&self) -> u64 {
        self.pacer.intended(0)
    }

    /// Messages handed out so far.
    pub fn sent(&self) -> u64 {
        self.i
    }

    /// The next message, once it is due; `None` when done or out of time.
    pub fn next(&mut self) -> Option<&BenchMsg> {
        if self.i >= self.count || (self.i.is_multiple_of(64) && self.i > 0 && now_ns() > self.end)
        {
            return None;
        }
        self.m.ts = if self.latency {
            self.pacer.wait(self.i)
        } else {
            now_ns()
        };
        self.m.seq = self.i;
        self.i += 1;
        Some(&self.m)
    }

    /// The message that ends the run.
    pub fn finish(&mut self) -> &BenchMsg {
        self.m.seq = END;
        &self.m
    }

    /// The outcome of an enqueue-cost run that fed `rec` one sample per call: per-call
    /// latency, and throughput from the feed's start until now.
    pub fn cost_outcome(&self, rec: &Recorder) -> Outcome {
        Outcome {
            latency: Some(rec.summary()),
            throughput: Some(Throughput::new(
                self.i,
                self.m.payload.len() + crate::msg::OVERHEAD,
                now_ns() - self.start(),
            )),
            sent: self.i,
            note: cut_note(self.i, self.count),
            memory: None,
        }
    }
}

/// The consumer side of a run: counts messages and records their one-way latency.
#[derive(Debug)]
pub(crate) struct Tally {
    rec: Option<Recorder>,
    n: u64,
    last: u64,
}

impl Tally {
    /// Records latency if `latency`.
    pub fn new(latency: bool) -> Self {
        Tally {
            rec: latency.then(Recorder::new),
            n: 0,
            last: now_ns(),
        }
    }

    /// Counts a message stamped `ts`; `false` for the end marker.
    pub fn take(&mut self, ts: u64, seq: u64) -> bool {
        if seq == END {
            return false;
        }
        self.last = now_ns();
        if let Some(rec) = &mut self.rec {
            rec.record(self.last.saturating_sub(ts));
        }
        self.n += 1;
        true
    }

    /// What the child reports.
    pub fn report(&self) -> ChildReport {
        ChildReport {
            received: self.n,
            latency: self.rec.as_ref().map(Recorder::summary),
            last_ns: self.last,
            ..ChildReport::default()
        }
    }
}

/// Reads the next message's (ts, seq) in place.
fn next(q: &mut JournalQueue<BenchMsg>, unchecked: bool) -> BoxResult<Option<(u64, u64)>> {
    if unchecked {
        Ok(q.read_bytes(|b| {
            // SAFETY: the queue was created for `BenchMsg` (its fingerprint is checked at open)
            // and records are written only by repliq's `serialize_into`; committed records
            // never change while mapped.
            let a = unsafe { repliq::access_unchecked::<BenchMsg>(b) };
            (a.ts.to_native(), a.seq.to_native())
        })?)
    } else {
        Ok(q.read(|a| (a.ts.to_native(), a.seq.to_native()))?)
    }
}

/// Enqueues, retrying while the queue is full, until `end`.
pub(crate) fn enqueue(q: &mut JournalQueue<BenchMsg>, m: &BenchMsg, end: u64) -> BoxResult<()> {
    loop {
        match q.enqueue(m) {
            Ok(_) => return Ok(()),
            Err(QueueError::Full { .. }) if now_ns() < end => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

impl System for Repliq {
    fn name(&self) -> &'static str {
        system_name(self.unchecked, self.place)
    }

    fn supports(&self, _kind: Kind) -> Result<(), String> {
        match self.place {
            Place::HugeTmpfs => crate::hugetmpfs::dir().map(|_| ()),
            Place::Disk | Place::Tmpfs => Ok(()),
        }
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        let (u, p) = (self.unchecked, self.place);
        match spec.kind {
            Kind::PingPong => pingpong(spec, u, p),
            Kind::OneWay { rate } => one_way(spec, rate, true, u, p, 1).map(|(o, _)| o),
            Kind::Throughput => one_way(spec, 0, false, u, p, 1).map(|(o, _)| o),
        }
    }
}

fn child_cfg(spec: &Spec, dir: &Path, latency: bool, extra: u64) -> ChildCfg {
    ChildCfg {
        name: dir.display().to_string(),
        name2: CURSOR.into(),
        count: spec.count,
        size: spec.size,
        cpu: cpu_pair().1,
        latency,
        secs_limit: spec.secs_limit + 10.0,
        extra,
        events: None,
        tls: None,
    }
}

/// One producer → `readers` readers (each its own cursor). Returns the outcome and, for
/// fan-out, the per-reader throughputs.
pub fn one_way(
    spec: &Spec,
    rate: u64,
    latency: bool,
    unchecked: bool,
    place: Place,
    readers: usize,
) -> BoxResult<(Outcome, Vec<Throughput>)> {
    let reader = ("repliq-read", u64::from(unchecked));
    let log_to = (latency && readers == 1 && crate::events::dir().is_some()).then(|| {
        std::env::temp_dir().join(format!("repliq-bench-events-{}.txt", std::process::id()))
    });
    let mut log: Vec<crate::events::Sent> = Vec::new();
    let r = one_way_with(
        spec,
        place,
        readers,
        reader,
        latency,
        log_to.clone(),
        |mut q| {
            on_cpu(cpu_pair().0, || {
                let mut feed = Feed::new(spec, rate, latency);
                let (start, end) = (feed.start(), feed.end);
                if log_to.is_some() {
                    log.reserve(usize::try_from(spec.count).unwrap_or(0));
                    let mut usage = crate::events::Sampler::new();
                    while let Some(m) = feed.next() {
                        let intended = m.ts;
                        let t0 = now_ns();
                        enqueue(&mut q, m, end)?;
                        let t1 = now_ns();
                        let (thread, others) = usage.delta();
                        log.push(crate::events::Sent {
                            intended,
                            start: t0,
                            end: t1,
                            thread,
                            others,
                        });
                    }
                } else {
                    while let Some(m) = feed.next() {
                        enqueue(&mut q, m, end)?;
                    }
                }
                let sent = feed.sent();
                enqueue(&mut q, feed.finish(), end + 5_000_000_000)?;
                Ok((start, sent))
            })
        },
    );
    if let Some(path) = log_to {
        let seen = crate::events::read_seen(&path);
        let _ = std::fs::remove_file(&path);
        if r.is_ok() {
            let name = system_name(unchecked, place);
            let title = format!("oneway@{} {} B, {name}", super::rate_label(rate), spec.size);
            crate::events::analyze(&title, &log, &seen?)?;
        }
    }
    r
}

/// One producer → `readers` reader processes of role `reader.0` (with `extra` = `reader.1`) on
/// a fresh queue. `produce` gets the producer handle, sends the run and the end marker, and
/// returns the intended time of its first send and the number of messages sent.
pub(crate) fn one_way_with(
    spec: &Spec,
    place: Place,
    readers: usize,
    reader: (&str, u64),
    latency: bool,
    events: Option<std::path::PathBuf>,
    produce: impl FnOnce(JournalQueue<BenchMsg>) -> BoxResult<(u64, u64)>,
) -> BoxResult<(Outcome, Vec<Throughput>)> {
    let anon_before = child::status_bytes("RssAnon");
    let dir = queue_dir(place)?;
    let q = options(spec.count, spec.size).create::<BenchMsg>(dir.path())?;
    // Setup, not the run: the first segment's file is prepared before the clock starts, as
    // iceoryx2's service and the floor's mapping are.
    q.warm_up(Duration::from_secs(10));
    let mut procs = Vec::new();
    for r in 0..readers {
        let mut cfg = child_cfg(spec, dir.path(), latency, reader.1);
        cfg.events = events.as_ref().map(|p| p.display().to_string());
        if readers > 1 {
            cfg.name2 = format!("fan{r}");
            cfg.cpu = None;
            // Register the cursor before the producer starts, so it sees every message.
            q.consumer(&cfg.name2)?;
        }
        procs.push(child::spawn(reader.0, &cfg)?);
    }
    for p in &procs {
        p.wait_ready(spec.timeout())?;
    }
    let (start, sent) = produce(q)?;
    let anon_after = child::status_bytes("RssAnon");
    let mut reports = Vec::new();
    for p in procs {
        reports.push(p.wait_report(spec.timeout())?);
    }
    for r in &reports {
        if r.received != sent {
            return Err(format!("repliq reader got {} of {sent}", r.received).into());
        }
    }
    let per_reader: Vec<Throughput> = reports
        .iter()
        .map(|r| Throughput::new(sent, spec.size, r.last_ns.saturating_sub(start)))
        .collect();
    let last = reports.iter().map(|r| r.last_ns).max().unwrap_or(start);
    Ok((
        Outcome {
            latency: reports.first().and_then(|r| r.latency.clone()),
            throughput: (!latency)
                .then(|| Throughput::new(sent, spec.size, last.saturating_sub(start))),
            sent,
            note: cut_note(sent, spec.count),
            memory: match (reports.first(), anon_before, anon_after) {
                (Some(r), Some(b), Some(a)) if !latency && r.rss_anon_bytes > 0 => {
                    Some(super::Memory {
                        consumer_anon_bytes: r.rss_anon_bytes,
                        consumer_file_bytes: r.rss_file_bytes,
                        producer_anon_delta_bytes: a as i64 - b as i64,
                        producer_anon_bytes: a,
                    })
                }
                _ => None,
            },
        },
        per_reader,
    ))
}

/// Child: reads with its cursor until the end marker.
pub fn child_read(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let unchecked = cfg.extra == 1;
    let mut q = open_reader(&cfg.name, unchecked, &cfg.name2)?;
    let end = deadline(cfg.secs_limit);
    let mut tally = Tally::new(cfg.latency);
    if let Some(path) = &cfg.events {
        return read_logged(&mut q, unchecked, end, tally, Path::new(path));
    }
    child::ready();
    let mut idle = 0u32;
    loop {
        match next(&mut q, unchecked)? {
            Some((ts, seq)) => {
                if !tally.take(ts, seq) {
                    break;
                }
            }
            None => {
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(4096) && now_ns() > end {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    Ok(tally.report().with_memory())
}

/// [`child_read`] with the event log: notes when each message was seen, how long since the
/// previous poll, and the page faults and context switches since the previous message.
fn read_logged(
    q: &mut JournalQueue<BenchMsg>,
    unchecked: bool,
    end: u64,
    mut tally: Tally,
    path: &Path,
) -> BoxResult<ChildReport> {
    let mut seen: Vec<crate::events::Seen> = Vec::with_capacity(1 << 16);
    let mut usage = crate::events::Sampler::new();
    child::ready();
    let mut idle = 0u32;
    let mut prev = now_ns();
    loop {
        let t = now_ns();
        let got = next(q, unchecked)?;
        match got {
            Some((ts, seq)) => {
                if !tally.take(ts, seq) {
                    break;
                }
                let at = now_ns();
                let (thread, others) = usage.delta();
                if seen.len() < 10_000_000 {
                    seen.push(crate::events::Seen {
                        seq,
                        at,
                        gap: t.saturating_sub(prev),
                        thread,
                        others,
                    });
                }
            }
            None => {
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(4096) && t > end {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        prev = t;
    }
    crate::events::write_seen(path, &seen)?;
    Ok(tally.report().with_memory())
}

fn pingpong(spec: &Spec, unchecked: bool, place: Place) -> BoxResult<Outcome> {
    let ping_dir = queue_dir(place)?;
    let pong_dir = queue_dir(place)?;
    let mut ping = options(spec.count, spec.size).create::<BenchMsg>(ping_dir.path())?;
    ping.warm_up(Duration::from_secs(10));
    let pong_w = options(spec.count, spec.size).create::<BenchMsg>(pong_dir.path())?;
    drop(pong_w);
    let mut cfg = child_cfg(spec, ping_dir.path(), false, u64::from(unchecked));
    cfg.name2 = pong_dir.path().display().to_string();
    let proc = child::spawn("repliq-pong", &cfg)?;
    proc.wait_ready(spec.timeout())?;
    let mut pong = open_reader(&cfg.name2, unchecked, CURSOR)?;
    let (rec, sent) = on_cpu(cpu_pair().0, || -> BoxResult<(Recorder, u64)> {
        let mut m = BenchMsg::of_size(spec.size);
        let mut rec = Recorder::new();
        let end = deadline(spec.secs_limit);
        let mut i = 0;
        while i < spec.count {
            let t0 = now_ns();
            m.ts = t0;
            m.seq = i;
            enqueue(&mut ping, &m, end + 5_000_000_000)?;
            let mut idle = 0u32;
            loop {
                if next(&mut pong, unchecked)?.is_some() {
                    break;
                }
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(4096) && now_ns() > end + 5_000_000_000 {
                    return Err("repliq ping-pong: no answer".into());
                }
                std::hint::spin_loop();
            }
            rec.record(now_ns() - t0);
            i += 1;
            if i.is_multiple_of(1024) && now_ns() > end {
                break;
            }
        }
        m.seq = END;
        enqueue(&mut ping, &m, end + 5_000_000_000)?;
        Ok((rec, i))
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

/// Child: echoes every message of the ping queue into the pong queue.
pub fn child_pong(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let unchecked = cfg.extra == 1;
    let mut ping = open_reader(&cfg.name, unchecked, CURSOR)?;
    let mut pong = QueueOptions::new()
        .consumer(CURSOR)
        .prefault(true)
        .open::<BenchMsg>(&cfg.name2)?;
    let end = deadline(cfg.secs_limit);
    let mut m = BenchMsg::of_size(cfg.size);
    let mut n = 0;
    child::ready();
    let mut idle = 0u32;
    loop {
        match next(&mut ping, unchecked)? {
            Some((_, END)) => break,
            Some((ts, seq)) => {
                m.ts = ts;
                m.seq = seq;
                enqueue(&mut pong, &m, end)?;
                n += 1;
            }
            None => {
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(4096) && now_ns() > end {
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

/// N producer threads → one reader process, flat out.
pub fn n_to_1(spec: &Spec, producers: usize) -> BoxResult<Outcome> {
    let dir = tempfile::tempdir()?;
    let q = options(spec.count, spec.size).create::<BenchMsg>(dir.path())?;
    let mut cfg = child_cfg(spec, dir.path(), false, 0);
    cfg.cpu = None;
    let proc = child::spawn("repliq-read", &cfg)?;
    proc.wait_ready(spec.timeout())?;
    let per = spec.count / producers as u64;
    let start = now_ns();
    let end = deadline(spec.secs_limit) + 1_000_000;
    let sent: u64 = std::thread::scope(|s| -> BoxResult<u64> {
        let mut handles = Vec::new();
        for _ in 0..producers {
            let mut q = q.try_clone()?;
            handles.push(s.spawn(move || -> BoxResult<u64> {
                let mut m = BenchMsg::of_size(spec.size);
                let mut i = 0;
                while i < per {
                    m.ts = now_ns();
                    m.seq = i;
                    enqueue(&mut q, &m, end)?;
                    i += 1;
                    if i.is_multiple_of(1024) && now_ns() > end {
                        break;
                    }
                }
                Ok(i)
            }));
        }
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "producer panicked")??;
        }
        Ok(total)
    })?;
    let mut q = q;
    let mut m = BenchMsg::of_size(spec.size);
    m.seq = END;
    enqueue(&mut q, &m, end + 5_000_000_000)?;
    let r = proc.wait_report(spec.timeout())?;
    if r.received != sent {
        return Err(format!("repliq reader got {} of {sent}", r.received).into());
    }
    Ok(Outcome {
        latency: None,
        throughput: Some(Throughput::new(
            sent,
            spec.size,
            r.last_ns.saturating_sub(start),
        )),
        sent,
        note: cut_note(sent, per * producers as u64),
        memory: None,
    })
}

/// Enqueue cost in one process for a durability mode: per-call latency and throughput.
pub fn durability(mode: Durability, size: usize, count: u64, secs: f64) -> BoxResult<Outcome> {
    let dir = tempfile::tempdir()?;
    // Room for every message (the reader cursor never moves): nothing is ever full.
    let mut q = options(count, size)
        .durability(mode)
        .create::<BenchMsg>(dir.path())?;
    let mut feed = Feed::new(&Spec::cost(size, count, secs), 0, false);
    let mut rec = Recorder::new();
    let end = feed.end + 5_000_000_000;
    while let Some(m) = feed.next() {
        let t0 = now_ns();
        enqueue(&mut q, m, end)?;
        rec.record(now_ns() - t0);
    }
    Ok(feed.cost_outcome(&rec))
}

/// Child: fills a queue with 1 KiB messages until it holds `extra` MiB, says READY, then keeps
/// writing (so the kill lands mid-write) until killed or out of time.
pub fn child_fill(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let mut q = QueueOptions::new()
        .capacity(u64::MAX / 4)
        .segment_size(64 << 20)
        .create::<BenchMsg>(&cfg.name)?;
    let mut m = BenchMsg::of_size(cfg.size);
    let target = cfg.extra << 20;
    let end = deadline(cfg.secs_limit);
    let mut written = 0u64;
    let mut i = 0;
    let mut said = false;
    while now_ns() < end {
        m.seq = i;
        q.enqueue(&m)?;
        i += 1;
        written += cfg.size as u64;
        if !said && written >= target {
            child::ready();
            said = true;
        }
        if said && i.is_multiple_of(64) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(ChildReport {
        received: i,
        latency: None,
        last_ns: now_ns(),
        ..ChildReport::default()
    })
}

/// Writes a journal of `mib` MiB in a child, kills it with SIGKILL mid-write, then times
/// opening the queue and appending the next message (which must first find the tail).
pub fn recovery(mib: u64, secs_limit: f64) -> BoxResult<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let cfg = ChildCfg {
        name: dir.path().display().to_string(),
        name2: String::new(),
        count: 0,
        size: 1024,
        cpu: None,
        latency: false,
        secs_limit,
        extra: mib,
        events: None,
        tls: None,
    };
    let proc = child::spawn("repliq-fill", &cfg)?;
    proc.wait_ready(Duration::from_secs_f64(secs_limit + 10.0))?;
    std::thread::sleep(Duration::from_millis(20));
    proc.kill();
    let t0 = now_ns();
    let mut q = QueueOptions::new().open::<BenchMsg>(dir.path())?;
    let opened = now_ns() - t0;
    q.enqueue(&BenchMsg::of_size(1024))?;
    let appended = now_ns() - t0;
    Ok((opened, appended))
}

/// Child: a replica node (repliq's gRPC `ReplicaService`) on 127.0.0.1:`extra`, storing under
/// `name`, until killed or out of time. With `tls`, over mutual TLS: a client certificate of the
/// run's CA is required, issued to the name in the stream's `Hello` (see [`super::tls`]).
pub fn child_replica(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let port = u16::try_from(cfg.extra)?;
    let root = std::path::PathBuf::from(&cfg.name);
    let limit = Duration::from_secs_f64(cfg.secs_limit);
    // The cost rows (`repl_cost`) ask this process for its CPU time.
    child::serve_cpu_queries();
    let tls = cfg.tls.clone();
    rt.block_on(async move {
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], port).into())?
            .with_nodelay(Some(true));
        let mut server = tonic::transport::Server::builder();
        let mut service = repliq::replication::ReplicaService::new(root);
        if let Some(dir) = &tls {
            server = server.tls_config(super::tls::replica_server_config(dir)?)?;
            service = service.authenticated();
        }
        child::ready();
        server
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(incoming, tokio::time::sleep(limit))
            .await?;
        BoxResult::Ok(())
    })?;
    Ok(ChildReport::default())
}

/// The primary's options of the replication rows: node `bench` (the name its certificate
/// carries), over mutual TLS with the certificates in `tls`.
pub(crate) fn primary_options(
    mode: repliq::ReplicationMode,
    tls: Option<&str>,
) -> repliq::replication::PrimaryOptions {
    let opts = repliq::replication::PrimaryOptions::new(super::tls::PRIMARY, Vec::new(), mode);
    match tls {
        Some(dir) => opts.tls(super::tls::Pki::primary(dir)),
        None => opts,
    }
}

/// A replica process and the directories of one replication run.
struct ReplicaSetup {
    /// Holds both journals; removed when dropped.
    root: tempfile::TempDir,
    /// The replica process's persistence root.
    replica_root: std::path::PathBuf,
    /// The primary's queue directory (not created yet).
    primary_dir: std::path::PathBuf,
    /// The replica's gRPC port on 127.0.0.1.
    port: u16,
    /// The replica process (killed when dropped).
    proc: child::ChildProc,
}

/// Starts a replica process (repliq's `ReplicaService`) on a free loopback port and waits until
/// it listens; over mutual TLS with the certificates in `tls`.
fn spawn_replica(size: usize, count: u64, secs: f64, tls: Option<&str>) -> BoxResult<ReplicaSetup> {
    let root = tempfile::tempdir()?;
    let replica_root = root.path().join("replica");
    let primary_dir = root.path().join("primary").join("benchq");
    std::fs::create_dir_all(&replica_root)?;
    let port = crate::servers::free_port()?;
    let cfg = ChildCfg {
        name: replica_root.display().to_string(),
        name2: String::new(),
        count,
        size,
        cpu: None,
        latency: false,
        secs_limit: secs * 3.0 + 30.0,
        extra: u64::from(port),
        events: None,
        tls: tls.map(str::to_owned),
    };
    let proc = child::spawn("repliq-replica", &cfg)?;
    proc.wait_ready(Duration::from_secs(30))?;
    Ok(ReplicaSetup {
        root,
        replica_root,
        primary_dir,
        port,
        proc,
    })
}

/// Replication to one replica process over loopback gRPC: the producer enqueues `count`
/// messages; a tailer on the replica's copy records each message's lag (replica visible −
/// enqueue time). Returns throughput at the replica, lag percentiles and, in synchronous mode,
/// per-`enqueue` latency (the replica acknowledges at `ack_level`). With `tls` (a
/// [`super::tls::Pki`] directory), the stream runs over mutual TLS.
pub fn replication(
    size: usize,
    count: u64,
    secs: f64,
    mode: repliq::ReplicationMode,
    ack_level: repliq::replication::AckLevel,
    tls: Option<&str>,
) -> BoxResult<(Outcome, Option<crate::stats::Latency>)> {
    let ReplicaSetup {
        root: _journals, // kept until the end of the run
        replica_root,
        primary_dir,
        port,
        proc,
    } = spawn_replica(size, count, secs, tls)?;
    let mut q = options(count, size).create::<BenchMsg>(&primary_dir)?;
    let replication = repliq::replication::EmbeddedReplication::start(
        q.path(),
        "bench",
        &[&format!("r=127.0.0.1:{port}")],
        primary_options(mode, tls).ack_level(ack_level),
    )?;
    let replica_dir = replica_root.join("benchq");
    let end = deadline(secs);
    let observer = std::thread::spawn(move || -> BoxResult<(Recorder, u64, u64)> {
        let give_up = deadline(secs * 2.0 + 5.0);
        let mut tailer = loop {
            match repliq::Tailer::<BenchMsg>::open(&replica_dir, repliq::StartAt::Earliest) {
                Ok(t) => break t,
                Err(_) if now_ns() < give_up => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => return Err(e.into()),
            }
        };
        let mut lag = Recorder::new();
        let mut n = 0;
        let mut last = now_ns();
        // A blocking reader (spin briefly, then sleep on the journal's futex): on 2 cores a
        // spinning observer would steal the CPU the replication threads need.
        loop {
            match tailer.next_timeout(Duration::from_millis(100))? {
                Some(m) if m.seq == END => break,
                Some(m) => {
                    last = now_ns();
                    lag.record(last.saturating_sub(m.ts));
                    n += 1;
                }
                None if now_ns() > give_up => break,
                None => {}
            }
        }
        Ok((lag, n, last))
    });
    let mut m = BenchMsg::of_size(size);
    let mut call = Recorder::new();
    let start = now_ns();
    let mut i = 0;
    while i < count {
        m.ts = now_ns();
        m.seq = i;
        enqueue(&mut q, &m, end + 5_000_000_000)?;
        call.record(now_ns() - m.ts);
        i += 1;
        if i.is_multiple_of(64) && now_ns() > end {
            break;
        }
    }
    m.seq = END;
    enqueue(&mut q, &m, end + 5_000_000_000)?;
    let (lag, n, last) = observer.join().map_err(|_| "observer panicked")??;
    drop(replication);
    drop(q);
    drop(proc);
    let mut note = cut_note(i, count);
    if n != i {
        let behind = format!("the replica showed {n} of {i} within the time limit");
        note = Some(match note {
            Some(x) => format!("{x}; {behind}"),
            None => behind,
        });
    }
    let sync = matches!(mode, repliq::ReplicationMode::Synchronous);
    Ok((
        Outcome {
            latency: Some(lag.summary()),
            throughput: Some(Throughput::new(n, size, last.saturating_sub(start))),
            sent: i,
            note,
            memory: None,
        },
        sync.then(|| call.summary()),
    ))
}

/// Catch-up replication to one replica process over loopback gRPC: the primary's journal holds
/// `count` messages before replication starts, so no producer competes with replication for the
/// CPU. Throughput is `count` over the time from starting replication (connection and `Hello`
/// included) until a tailer on the replica's copy has seen the last message. With `tls`, over
/// mutual TLS (the handshake is in the time).
pub fn replication_catch_up(
    size: usize,
    count: u64,
    secs: f64,
    tls: Option<&str>,
) -> BoxResult<Outcome> {
    let ReplicaSetup {
        root: _journals, // kept until the end of the run
        replica_root,
        primary_dir,
        port,
        proc,
    } = spawn_replica(size, count, secs, tls)?;
    let mut q = options(count, size).create::<BenchMsg>(&primary_dir)?;
    let mut m = BenchMsg::of_size(size);
    let fill_end = deadline(secs * 2.0 + 5.0);
    for i in 0..count {
        m.seq = i;
        enqueue(&mut q, &m, fill_end)?;
    }
    m.seq = END;
    enqueue(&mut q, &m, fill_end)?;
    // The fill may have left the next segment's file being prepared in the background: setup,
    // not replication, so wait for it before the clock starts.
    q.warm_up(Duration::from_secs(10));
    let replica_dir = replica_root.join("benchq");
    let observer = std::thread::spawn(move || -> BoxResult<(u64, u64)> {
        let give_up = deadline(secs * 2.0 + 5.0);
        let mut tailer = loop {
            match repliq::Tailer::<BenchMsg>::open(&replica_dir, repliq::StartAt::Earliest) {
                Ok(t) => break t,
                Err(_) if now_ns() < give_up => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => return Err(e.into()),
            }
        };
        let mut n = 0;
        loop {
            match tailer.next_timeout(Duration::from_millis(100))? {
                Some(m) if m.seq == END => return Ok((n, now_ns())),
                Some(_) => n += 1,
                None if now_ns() > give_up => return Ok((n, now_ns())),
                None => {}
            }
        }
    });
    let start = now_ns();
    let replication = repliq::replication::EmbeddedReplication::start(
        q.path(),
        "bench",
        &[&format!("r=127.0.0.1:{port}")],
        primary_options(repliq::ReplicationMode::Asynchronous, tls),
    )?;
    let (n, last) = observer.join().map_err(|_| "observer panicked")??;
    drop(replication);
    drop(q);
    drop(proc);
    Ok(Outcome {
        latency: None,
        throughput: Some(Throughput::new(n, size, last.saturating_sub(start))),
        sent: count,
        note: Some(if n == count {
            format!("{count} messages in the primary's journal before replication started")
        } else {
            format!("the replica showed {n} of {count} within the time limit")
        }),
        memory: None,
    })
}
