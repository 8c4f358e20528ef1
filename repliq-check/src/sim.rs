//! The checker on the in-process simulation (docs/CHECKER.md, "The simulation").
//!
//! Three nodes run repliq's I/O-free replication state machines ([`Leader`], [`Follower`],
//! [`Lineage`]: the code `repliqd` drives) over a simulated network, with a simulated lease
//! election, producers that write a history in the checker's format, and seeded faults drawn from
//! the same kinds as the container fault schedules (`.ci/fault_schedules.py`). At the end every
//! fault heals, the cluster is run until it converges, and the nodes' journals are written as
//! `repliq cat` prints them. The same parsers and the same [`check_with`] as
//! for the containers then judge the run.
//!
//! **Where it lives, and why here.** `repliq-check` depends on `repliq`, so repliq's own unit
//! tests cannot call the checker. The state machines are already public (hidden from the docs)
//! because `repliqd` drives them, so the simulation needs nothing new from `repliq`: no feature,
//! no `__sim` module, no test code compiled into the library. It sits above both, beside the
//! checker whose input it produces. repliq's own simulations (`replication/test.rs`,
//! `competing_test.rs`) stay where they are: they assert the protocol's invariants after every
//! step, with access to the internals; this one judges only what clients were told and what the
//! journals hold, exactly as the container runs are judged.
//!
//! Time is logical: one tick stands for 100 ms of the container schedules (so the schedule
//! `[2.1s restart primary, 4.3s partition primary 3.5s]` replays with [`parse_schedule`]), and
//! the history's `time` is a counter that every event (a history line, a record written)
//! advances, so all events of a run are totally ordered.
//!
//! Everything is a function of the seed and the fault list, so a failing run replays exactly,
//! and [`minimize`] removes faults (and shortens them) as long as the run still fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use repliq::replication::{
    Follower, FollowerDecision, FrameHeader, Leader, LeaderAction, LeaderConfig, Lineage, RecordId,
    Refusal, StreamId,
};

use crate::history::{Function, Kind as OpKind, Op};
use crate::{Error, Journal, Report, check_with, history};

/// Ticks per second of the container schedules' times.
pub const TICKS_PER_SECOND: u64 = 10;

/// A tiny deterministic PRNG (xorshift64*), so a run replays from its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        // Distinct, nonzero states for distinct (seed, stream): splitmix64 of both.
        let mut z = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(stream.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A fault kind: the container schedules' seven, and `elect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// The node crashes (its process and its producers die); it restarts after the length.
    Kill,
    /// The node (and its producers) stop running for the length; messages to it wait.
    Pause,
    /// The node is cut off from its peers and from the election's store.
    Partition,
    /// A crash and an immediate restart (shorter than the lease).
    Restart,
    /// The election's store is down: no lease can be renewed or taken.
    EtcdStop,
    /// The node receives nothing from its peers (over TCP: its streams break), but still reaches
    /// the election's store.
    Oneway,
    /// The node cannot reach the election's store; its peers still reach it.
    EtcdCut,
    /// The lease is lost now (a renewal that failed): the holder fences itself, another node is
    /// elected.
    Elect,
}

impl FaultKind {
    const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Restart,
        FaultKind::EtcdStop,
        FaultKind::Oneway,
        FaultKind::EtcdCut,
        FaultKind::Elect,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::EtcdStop => "etcd-stop",
            FaultKind::Oneway => "oneway",
            FaultKind::EtcdCut => "etcd-cut",
            FaultKind::Elect => "elect",
        }
    }

    /// Whether the fault lasts (has a length).
    fn lasts(self) -> bool {
        !matches!(self, FaultKind::Restart | FaultKind::Elect)
    }
}

/// Which node a fault hits, resolved when it starts (as the container scheduler does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The lease holder (or the node whose state says primary of the highest epoch).
    Primary,
    /// The first or second of the other nodes, by name.
    Replica(usize),
    /// The election's store (`etcd-stop`, `elect`).
    Etcd,
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// When it starts (ticks).
    pub at: u64,
    /// What it is.
    pub kind: FaultKind,
    /// Whom it hits.
    pub target: Target,
    /// How long it lasts (ticks; 0 for `restart` and `elect`).
    pub len: u64,
}

impl fmt::Display for Fault {
    /// As the container scheduler prints it: `4.3s partition primary 3.5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |t: u64| format!("{}.{}s", t / TICKS_PER_SECOND, t % TICKS_PER_SECOND);
        let target = match self.target {
            Target::Primary => "primary".to_owned(),
            Target::Replica(i) => format!("replica{i}"),
            Target::Etcd => "etcd".to_owned(),
        };
        write!(f, "{} {} {target}", secs(self.at), self.kind.name())?;
        if self.kind.lasts() {
            write!(f, " {}", secs(self.len))?;
        }
        Ok(())
    }
}

/// A schedule as the container scheduler prints it: `[2.1s restart primary, 4.3s partition
/// primary 3.5s]`.
#[must_use]
pub fn format_schedule(faults: &[Fault]) -> String {
    let parts: Vec<String> = faults.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Parses a schedule printed by the container scheduler or by [`format_schedule`].
///
/// # Errors
///
/// A sentence naming the fault that cannot be read.
pub fn parse_schedule(text: &str) -> Result<Vec<Fault>, String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut faults = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let bad = |why: &str| format!("fault `{part}`: {why}");
        let ticks = |w: &str| -> Result<u64, String> {
            let s: f64 = w
                .strip_suffix('s')
                .ok_or_else(|| bad("a time needs an `s`"))?
                .parse()
                .map_err(|e| bad(&format!("time {w}: {e}")))?;
            if !(0.0..1e6).contains(&s) {
                return Err(bad("time out of range"));
            }
            // Rounded to whole ticks (0.1 s).
            Ok((s * TICKS_PER_SECOND as f64).round() as u64)
        };
        if words.len() < 3 {
            return Err(bad("expected `TIME KIND TARGET [LENGTH]`"));
        }
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == words[1])
            .ok_or_else(|| bad(&format!("unknown kind {}", words[1])))?;
        let target = match words[2] {
            "primary" => Target::Primary,
            "etcd" => Target::Etcd,
            w => match w.strip_prefix("replica").and_then(|n| n.parse().ok()) {
                Some(i @ (0 | 1)) => Target::Replica(i),
                _ => return Err(bad(&format!("unknown target {w}"))),
            },
        };
        let len = match words.get(3) {
            Some(w) => ticks(w)?,
            None => 0,
        };
        faults.push(Fault {
            at: ticks(words[0])?,
            kind,
            target,
            len,
        });
    }
    Ok(faults)
}

/// How the election picks among the candidates that reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRule {
    /// The most records (`next_seq`), ties to the smaller name: `repliqd`'s election before
    /// the simulation found it loses acknowledged records (seed 540); kept to replay that.
    NextSeq,
    /// The newest epoch of the last record, then the most records (Raft's "at least as up to
    /// date"): `repliqd`'s election (`repliqd/src/election/machine.rs`, `Position`).
    EpochThenNextSeq,
}

/// A defect planted on purpose, to show that the simulation and the checker find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The primary tells the producer `ok` as soon as the record is written locally, before
    /// `required_acks` replicas hold it.
    AckBeforeReplicas,
    /// A replica applies the frames it refuses (an older epoch's, a superseded stream's) anyway,
    /// at their sequence numbers.
    AcceptStaleFrames,
}

impl Bug {
    /// Its name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeReplicas => "ack-before-replicas",
            Bug::AcceptStaleFrames => "accept-stale-frames",
        }
    }

    /// The bug of that name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Bug::AckBeforeReplicas, Bug::AcceptStaleFrames]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

/// What a run simulates.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ticks of faults and writes; then every fault heals and the cluster must converge.
    pub duration: u64,
    /// Replicas that must hold a record before it is acknowledged (1: as the container runs).
    pub required_acks: usize,
    /// Producers started on each new primary.
    pub producers: usize,
    /// Percent chance per tick that an idle producer enqueues.
    pub write_percent: u64,
    /// Ticks a producer waits for the acknowledgement before its outcome is `unknown`.
    pub ack_timeout: u64,
    /// Ticks an unrenewed lease stays valid.
    pub lease: u64,
    /// At most this many ticks after a paused node resumes, its election driver notices the
    /// lease it lost (`retry_period`, 0.5 s in the container runs).
    pub retry: u64,
    /// Percent chance per tick that one open stream breaks (a lost packet).
    pub break_percent: u64,
    /// A stream whose other end has been paused this many ticks is closed by the HTTP/2
    /// keep-alive (1 s pings, 3 s timeout: `STREAM_KEEPALIVE`, on both ends); 0: never.
    pub keepalive: u64,
    /// The election's choice.
    pub election: ElectionRule,
    /// A planted defect, if any.
    pub bug: Option<Bug>,
    /// Random schedules let faults overlap ([`draw_schedule`]).
    pub overlap: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duration: 300,
            required_acks: 1,
            producers: 2,
            write_percent: 50,
            ack_timeout: 20,
            lease: 30,
            retry: 5,
            break_percent: 3,
            keepalive: 40,
            election: ElectionRule::EpochThenNextSeq,
            bug: None,
            overlap: false,
        }
    }
}

/// Draws the faults of seed `seed` for a run of `duration` ticks. As the container schedules
/// draw them: one after another, 0.5–4 s after the previous one ended, so that at most one node
/// is faulty at a time; with `overlap`, one every 0.5–4 s whatever the previous one's length, so
/// that long ones overlap the next (two nodes down at once: more than `required_acks: 1` of
/// three nodes promises to survive).
#[must_use]
pub fn draw_schedule(seed: u64, duration: u64, lease: u64, overlap: bool) -> Vec<Fault> {
    let mut rng = Rng::new(seed, 1);
    let mut faults = Vec::new();
    let mut t = rng.range(10, 30);
    while t < duration {
        let kind = FaultKind::ALL[rng.below(FaultKind::ALL.len() as u64) as usize];
        let target = match kind {
            FaultKind::EtcdStop | FaultKind::Elect => Target::Etcd,
            _ => match rng.below(4) {
                0 | 1 => Target::Primary,
                i => Target::Replica(i as usize - 2),
            },
        };
        let len = match kind {
            FaultKind::Pause => rng.range(lease + 5, lease + 40),
            FaultKind::Restart | FaultKind::Elect => 0,
            _ => rng.range(10, 80),
        };
        faults.push(Fault {
            at: t,
            kind,
            target,
            len,
        });
        t += rng.range(5, 40) + if overlap { 0 } else { len };
    }
    faults
}

/// One stored record: what `repliq cat` prints of it, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    seq: u64,
    time: u64,
    producer: u64,
    pseq: u64,
    crc: u32,
    /// The epoch that wrote it (for the Raft-style election rule).
    epoch: u64,
}

#[derive(Debug, Clone)]
enum Msg {
    Hello {
        epoch: u64,
        epoch_start: u64,
        lineage: Lineage,
    },
    Subscribe {
        epoch: u64,
        next_seq: u64,
    },
    Frame {
        header: FrameHeader,
        records: Vec<Rec>,
    },
    Ack {
        epoch: u64,
        next_seq: u64,
    },
    Refused {
        epoch: u64,
    },
}

/// A replication stream from a primary to a replica.
#[derive(Debug, Clone)]
struct Conn {
    primary: usize,
    replica: usize,
    /// Packets still flow both ways.
    open: bool,
    /// The primary closed it: what it sent still arrives, nothing comes back.
    closing: bool,
    /// The replica's handle of it, once its Hello was accepted.
    stream: Option<StreamId>,
}

#[derive(Debug, Clone)]
struct Packet {
    conn: usize,
    to_replica: bool,
    at: u64,
    msg: Msg,
}

#[derive(Debug)]
struct Primary {
    leader: Leader,
    /// The current stream to each peer, and when to try again after one broke.
    conns: BTreeMap<usize, usize>,
    retry_at: BTreeMap<usize, u64>,
}

#[derive(Debug)]
struct Node {
    name: String,
    log: Vec<Rec>,
    moved_aside: usize,
    // What survives a crash (replication.json).
    epoch: u64,
    lineage: Lineage,
    is_primary: bool,
    // Faults in force (counters: faults may overlap).
    down: u32,
    paused: u32,
    isolated: u32,
    etcd_cut: u32,
    // What a crash loses: the replica service's follower of the queue (built on a Hello, kept
    // while the node stays a replica of the same epoch, as `replica_service.rs` `admit` does),
    // and the epoch of the state it was built with or last stored.
    follower: Option<Follower>,
    follower_epoch: u64,
    primary: Option<Primary>,
    /// Ticks the node has been up, running and reaching the store in a row.
    reachable_for: u64,
    /// Its last advertisement in the store (its position by the election's rule) and when.
    advert: Option<((u64, u64), u64)>,
    /// It lost the lease while paused: it fences itself at this tick after it resumes (its
    /// election driver's next round); until then it acts as primary.
    fence_at: Option<u64>,
    /// When its current pause began.
    paused_since: Option<u64>,
}

impl Node {
    fn runs(&self) -> bool {
        self.down == 0 && self.paused == 0
    }

    /// Moves the records from `from` on aside (none if it holds none there).
    fn move_aside(&mut self, from: u64) {
        let from = usize::try_from(from).map_or(self.log.len(), |f| f.min(self.log.len()));
        self.moved_aside += self.log.len() - from;
        self.log.truncate(from);
    }
}

#[derive(Debug)]
struct Producer {
    id: u64,
    node: usize,
    next: u64,
    /// The producer's seq, the record's journal seq, and when it was invoked.
    pending: Option<(u64, u64, u64)>,
    dead: bool,
}

/// What a run produced: the history and the final journals in the checker's formats, and what
/// happened.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The faults.
    pub faults: Vec<Fault>,
    /// The history, JSON lines (docs/CHECKER.md).
    pub history: String,
    /// The primary's name and its journal as `repliq cat` prints it.
    pub primary: (String, String),
    /// Each replica's name and journal.
    pub replicas: Vec<(String, String)>,
    /// Ticks from the end of the faults until the cluster converged, if it did.
    pub converged_in: Option<u64>,
    /// What happened, for people: faults with their resolved node, elections, step-downs.
    pub events: Vec<String>,
    /// Records moved aside on all nodes.
    pub moved_aside: usize,
    /// Elections held.
    pub elections: usize,
}

impl Outcome {
    /// Checks the run with the checker, through the same parsers as the container runs.
    ///
    /// # Errors
    ///
    /// The simulation wrote something the parsers refuse (a defect of the simulation).
    pub fn check(&self) -> Result<Report, Error> {
        let ops = history::parse("sim-history.jsonl", &self.history)?;
        let replicas = self
            .replicas
            .iter()
            .map(|(n, text)| Journal::parse(n, &format!("sim-{n}.cat"), text))
            .collect::<Result<Vec<_>, _>>()?;
        let (name, text) = &self.primary;
        let primary = Journal::parse(name, &format!("sim-{name}.cat"), text)?;
        check_with(&ops, &primary, &replicas, &[])
    }
}

/// The verdict of one run: the checker's report, and whether the cluster converged.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The checker's report.
    pub report: Report,
    /// The cluster converged after the faults healed.
    pub converged: bool,
}

impl Verdict {
    /// Neither an anomaly nor a cluster that failed to converge.
    #[must_use]
    pub fn valid(&self) -> bool {
        self.report.valid() && self.converged
    }

    /// What failed, as a set of names (anomaly kinds, and `not-converged`).
    #[must_use]
    pub fn failures(&self) -> BTreeSet<&'static str> {
        let mut s: BTreeSet<&'static str> = self.report.by_kind().into_keys().collect();
        if !self.converged {
            s.insert("not-converged");
        }
        s
    }
}

/// Runs `faults` with seed `seed` and checks the outcome.
///
/// # Errors
///
/// The simulation wrote something the checker's parsers refuse.
pub fn run_and_check(
    seed: u64,
    faults: &[Fault],
    config: &Config,
) -> Result<(Outcome, Verdict), Error> {
    let outcome = run(seed, faults, config);
    let report = outcome.check()?;
    let converged = outcome.converged_in.is_some();
    Ok((outcome, Verdict { report, converged }))
}

/// Shrinks a failing schedule: drops faults one at a time, then halves lengths and moves starts
/// earlier, keeping each change while the run still fails with one of the kinds it failed with
/// first. At most `budget` runs.
///
/// # Errors
///
/// As [`run_and_check`].
pub fn minimize(
    seed: u64,
    faults: &[Fault],
    config: &Config,
    budget: usize,
) -> Result<Vec<Fault>, Error> {
    let (_, first) = run_and_check(seed, faults, config)?;
    let wanted = first.failures();
    if wanted.is_empty() {
        return Ok(faults.to_vec());
    }
    let runs = std::cell::Cell::new(0);
    let fails = |candidate: &[Fault]| -> Result<bool, Error> {
        runs.set(runs.get() + 1);
        let (_, v) = run_and_check(seed, candidate, config)?;
        Ok(!v.failures().is_disjoint(&wanted))
    };
    let mut best = faults.to_vec();
    let mut changed = true;
    while changed && runs.get() < budget {
        changed = false;
        let mut i = 0;
        while i < best.len() && runs.get() < budget {
            let mut c = best.clone();
            c.remove(i);
            if fails(&c)? {
                best = c;
                changed = true;
            } else {
                i += 1;
            }
        }
        for i in 0..best.len() {
            if runs.get() >= budget {
                break;
            }
            let f = best[i];
            let mut tries = Vec::new();
            if f.kind.lasts() && f.len > 1 {
                tries.push(Fault {
                    len: f.len / 2,
                    ..f
                });
            }
            let earliest = if i == 0 { 0 } else { best[i - 1].at };
            if f.at > earliest {
                tries.push(Fault {
                    at: earliest + (f.at - earliest) / 2,
                    ..f
                });
            }
            for t in tries {
                let mut c = best.clone();
                c[i] = t;
                if fails(&c)? {
                    best = c;
                    changed = true;
                    break;
                }
            }
        }
    }
    Ok(best)
}

/// Runs one schedule and returns the history and the final journals.
#[must_use]
pub fn run(seed: u64, faults: &[Fault], config: &Config) -> Outcome {
    let mut sim = Sim::new(seed, config.clone());
    let mut faults: Vec<Fault> = faults.to_vec();
    faults.sort_by_key(|f| f.at);
    // Active faults: when each ends, and what it did.
    let mut ending: Vec<(u64, FaultKind, Option<usize>)> = Vec::new();
    let mut next = 0;
    for tick in 0..config.duration {
        sim.now = tick;
        while next < faults.len() && faults[next].at <= tick {
            let f = faults[next];
            next += 1;
            let node = sim.start_fault(f);
            ending.push((tick + f.len.max(1), f.kind, node));
        }
        let (done, keep): (Vec<_>, Vec<_>) = ending.into_iter().partition(|e| e.0 <= tick);
        ending = keep;
        for (_, kind, node) in done {
            sim.end_fault(kind, node);
        }
        sim.tick(true);
    }
    for (_, kind, node) in ending {
        sim.end_fault(kind, node);
    }
    sim.events
        .push(format!("t={} faults healed", config.duration));
    // Let the cluster converge: no new writes, no lost packets.
    let mut converged_in = None;
    for extra in 0..3_000 {
        sim.now = config.duration + extra;
        sim.tick(false);
        if sim.converged() {
            converged_in = Some(extra);
            break;
        }
    }
    sim.finish(seed, faults, converged_in)
}

struct Sim {
    config: Config,
    rng: Rng,
    now: u64,
    clock: u64,
    nodes: Vec<Node>,
    conns: Vec<Conn>,
    net: Vec<Packet>,
    producers: Vec<Producer>,
    next_producer: u64,
    history: Vec<Op>,
    /// The lease: its holder and epoch, and how long the holder has not renewed it.
    holder: Option<usize>,
    lease_epoch: u64,
    unrenewed: u64,
    etcd_down: u32,
    next_crc: u32,
    events: Vec<String>,
    elections: usize,
}

impl Sim {
    fn new(seed: u64, config: Config) -> Sim {
        let names = ["a", "b", "c"];
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| Node {
                name: (*n).to_owned(),
                log: Vec::new(),
                moved_aside: 0,
                epoch: 1,
                lineage: Lineage::of(1, 0),
                is_primary: i == 0,
                down: 0,
                paused: 0,
                isolated: 0,
                etcd_cut: 0,
                follower: None,
                follower_epoch: 0,
                primary: None,
                reachable_for: 0,
                advert: None,
                fence_at: None,
                paused_since: None,
            })
            .collect();
        let mut sim = Sim {
            rng: Rng::new(seed, 2),
            config,
            now: 0,
            clock: 0,
            nodes,
            conns: Vec::new(),
            net: Vec::new(),
            producers: Vec::new(),
            next_producer: 1,
            history: Vec::new(),
            holder: Some(0),
            lease_epoch: 1,
            unrenewed: 0,
            etcd_down: 0,
            next_crc: 1,
            events: Vec::new(),
            elections: 0,
        };
        sim.become_primary(0);
        sim
    }

    fn time(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn leader_config(&self, epoch: u64, epoch_start: u64) -> LeaderConfig {
        LeaderConfig {
            epoch,
            epoch_start,
            required_acks: self.config.required_acks,
            max_batch: 8,
            window: 32,
        }
    }

    /// Starts the primary side on `n` (its state says primary of `n.epoch`).
    fn become_primary(&mut self, n: usize) {
        let node = &self.nodes[n];
        let start = node.lineage.entries().last().map_or(0, |e| e.start);
        let config = self.leader_config(node.epoch, start);
        let next = node.log.len() as u64;
        self.nodes[n].primary = Some(Primary {
            leader: Leader::new(config, next),
            conns: BTreeMap::new(),
            retry_at: BTreeMap::new(),
        });
        for _ in 0..self.config.producers {
            let id = self.next_producer;
            self.next_producer += 1;
            self.producers.push(Producer {
                id,
                node: n,
                next: 0,
                pending: None,
                dead: false,
            });
        }
    }

    /// The node whose state says primary of the highest epoch (the lease holder first).
    fn primary_node(&self) -> usize {
        if let Some(h) = self.holder {
            return h;
        }
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_primary)
            .max_by_key(|&i| self.nodes[i].epoch)
            .unwrap_or(0)
    }

    fn resolve(&self, target: Target) -> Option<usize> {
        let p = self.primary_node();
        match target {
            Target::Primary => Some(p),
            Target::Replica(i) => (0..self.nodes.len()).filter(|&n| n != p).nth(i),
            Target::Etcd => None,
        }
    }

    fn start_fault(&mut self, f: Fault) -> Option<usize> {
        let node = self.resolve(f.target);
        let name = node.map_or("etcd".to_owned(), |n| self.nodes[n].name.clone());
        self.events.push(format!("t={} {} -> {name}", self.now, f));
        match (f.kind, node) {
            (FaultKind::Kill | FaultKind::Restart, Some(n)) => self.crash(n),
            (FaultKind::Pause, Some(n)) => {
                self.nodes[n].paused += 1;
                self.nodes[n].paused_since.get_or_insert(self.now);
            }
            (FaultKind::Partition, Some(n)) => {
                self.nodes[n].isolated += 1;
                self.nodes[n].etcd_cut += 1;
                self.cut_streams_of(n);
            }
            (FaultKind::Oneway, Some(n)) => {
                self.nodes[n].isolated += 1;
                self.cut_streams_of(n);
            }
            (FaultKind::EtcdCut, Some(n)) => self.nodes[n].etcd_cut += 1,
            (FaultKind::EtcdStop, _) => self.etcd_down += 1,
            (FaultKind::Elect, _) => {
                if let Some(h) = self.holder {
                    self.lose_lease(h, "the lease was lost");
                    self.elect(Some(h));
                }
            }
            _ => {}
        }
        node
    }

    fn end_fault(&mut self, kind: FaultKind, node: Option<usize>) {
        match (kind, node) {
            (FaultKind::Kill | FaultKind::Restart, Some(n)) => self.restart(n),
            (FaultKind::Pause, Some(n)) => {
                self.nodes[n].paused -= 1;
                if self.nodes[n].paused == 0 {
                    self.nodes[n].paused_since = None;
                }
                if self.nodes[n].paused == 0 && self.nodes[n].fence_at == Some(u64::MAX) {
                    let at = self.now + self.rng.range(0, self.config.retry);
                    self.nodes[n].fence_at = Some(at);
                }
            }
            (FaultKind::Partition, Some(n)) => {
                self.nodes[n].isolated -= 1;
                self.nodes[n].etcd_cut -= 1;
            }
            (FaultKind::Oneway, Some(n)) => self.nodes[n].isolated -= 1,
            (FaultKind::EtcdCut, Some(n)) => self.nodes[n].etcd_cut -= 1,
            (FaultKind::EtcdStop, _) => self.etcd_down -= 1,
            _ => {}
        }
    }

    fn crash(&mut self, n: usize) {
        self.nodes[n].down += 1;
        if self.nodes[n].down > 1 {
            return;
        }
        // The process and everything in memory are gone; the log and replication.json stay.
        self.nodes[n].primary = None;
        self.nodes[n].fence_at = None;
        self.nodes[n].follower = None;
        for p in self.producers.iter_mut().filter(|p| p.node == n) {
            // A producer killed with its node: its open invocation stays open (unknown).
            p.dead = true;
        }
        self.cut_streams_of(n);
    }

    fn restart(&mut self, n: usize) {
        self.nodes[n].down -= 1;
        if self.nodes[n].down > 0 {
            return;
        }
        let node = &mut self.nodes[n];
        node.reachable_for = 0;
        if node.is_primary {
            if self.holder == Some(n) {
                // The lease still names it: it resumes as primary of its epoch.
                self.events
                    .push(format!("t={} {} resumes as primary", self.now, node.name));
                self.become_primary(n);
            } else {
                // Primary in its state file, but the lease does not back it: it fences itself.
                node.is_primary = false;
                self.events.push(format!(
                    "t={} {} restarts fenced (not the lease holder)",
                    self.now, node.name
                ));
            }
        }
    }

    /// Breaks every stream of node `n` (a crash, a partition): what is in flight is lost.
    fn cut_streams_of(&mut self, n: usize) {
        for c in 0..self.conns.len() {
            if self.conns[c].open && (self.conns[c].primary == n || self.conns[c].replica == n) {
                self.cut(c);
            }
        }
    }

    /// Breaks stream `c`: its packets are lost; the primary reconnects later.
    fn cut(&mut self, c: usize) {
        if !self.conns[c].open {
            return;
        }
        self.conns[c].open = false;
        self.net.retain(|p| p.conn != c);
        let (p, r) = (self.conns[c].primary, self.conns[c].replica);
        let now = self.now;
        let backoff = self.rng.range(1, 10);
        let name = self.nodes[r].name.clone();
        if let Some(prim) = self.nodes[p].primary.as_mut()
            && prim.conns.get(&r) == Some(&c)
        {
            prim.conns.remove(&r);
            prim.leader.disconnected(&name);
            prim.retry_at.insert(r, now + backoff);
        }
    }

    fn send(&mut self, c: usize, to_replica: bool, msg: Msg) {
        if !self.conns[c].open {
            return;
        }
        if !to_replica && self.conns[c].closing {
            return;
        }
        // FIFO per direction of a stream: never before the last packet sent the same way.
        let latency = self.rng.range(1, 3);
        let after = self
            .net
            .iter()
            .filter(|p| p.conn == c && p.to_replica == to_replica)
            .map(|p| p.at)
            .max()
            .unwrap_or(0);
        self.net.push(Packet {
            conn: c,
            to_replica,
            at: (self.now + latency).max(after),
            msg,
        });
    }

    /// The holder `h` can no longer act as primary: it fences itself (its state says replica,
    /// its producers are refused from now on; an enqueue waiting for acknowledgements has an
    /// unknown outcome). What it already sent still arrives.
    fn lose_lease(&mut self, h: usize, why: &str) {
        self.events.push(format!(
            "t={} {} fenced: {why}",
            self.now, self.nodes[h].name
        ));
        self.holder = None;
        self.unrenewed = 0;
        if self.nodes[h].paused > 0 && self.nodes[h].down == 0 {
            // A paused process learns it only after it resumes: until its driver's next round
            // it still streams and publishes acknowledgements.
            self.nodes[h].fence_at = Some(u64::MAX);
        } else {
            self.demote(h, "fenced: lease lost");
        }
    }

    fn demote(&mut self, n: usize, why: &str) {
        self.nodes[n].is_primary = false;
        self.nodes[n].fence_at = None;
        if let Some(prim) = self.nodes[n].primary.take() {
            for c in prim.conns.values() {
                self.conns[*c].closing = true;
            }
        }
        let epoch = self.nodes[n].epoch;
        let mut outcomes = Vec::new();
        for p in self.producers.iter_mut().filter(|p| p.node == n && !p.dead) {
            if let Some((seq, _, _)) = p.pending.take() {
                outcomes.push((p.id, seq));
            }
        }
        for (id, seq) in outcomes {
            self.emit(OpKind::Unknown, id, seq, n, Some(epoch), None, Some(why));
        }
    }

    /// Whether node `n` can hold or take the lease now.
    fn reaches_store(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        self.etcd_down == 0 && node.runs() && node.etcd_cut == 0
    }

    /// Elects the best candidate that reaches the store (not `exclude`), if any.
    fn elect(&mut self, exclude: Option<usize>) {
        let lease = self.config.lease;
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| Some(n) != exclude && self.reaches_store(n))
            // A node watches for a lease's length before it takes one over.
            .filter(|&n| self.nodes[n].reachable_for >= lease || exclude.is_some())
            .collect();
        // Ties go to the smaller name (the smaller index).
        let key = |n: usize| (self.position(n), std::cmp::Reverse(n));
        let Some(best) = candidates.into_iter().max_by_key(|&n| key(n)) else {
            return;
        };
        // It must be at least as far as every other node advertised within a lease's length
        // (`most_up_to_date` in `repliqd/src/election/machine.rs`).
        let behind = (0..self.nodes.len()).any(|n| {
            n != best
                && self.nodes[n].advert.is_some_and(|(pos, at)| {
                    self.now < at + lease && (pos, std::cmp::Reverse(n)) > key(best)
                })
        });
        if behind {
            return;
        }
        let epoch = self.lease_epoch.max(self.nodes[best].epoch) + 1;
        self.lease_epoch = epoch;
        self.holder = Some(best);
        self.unrenewed = 0;
        self.elections += 1;
        let positions: Vec<String> = (0..self.nodes.len())
            .map(|n| {
                let node = &self.nodes[n];
                let last = node.log.last().map_or(0, |r| r.epoch);
                format!("{} {}@e{last}", node.name, node.log.len())
            })
            .collect();
        let node = &mut self.nodes[best];
        let start = node.log.len() as u64;
        self.events.push(format!(
            "t={} {} elected: primary of epoch {epoch} from seq {start} (logs: {})",
            self.now,
            node.name,
            positions.join(", ")
        ));
        node.epoch = epoch;
        node.lineage.begin(epoch, start);
        node.is_primary = true;
        self.become_primary(best);
    }

    /// A node's position as the election compares it.
    fn position(&self, n: usize) -> (u64, u64) {
        let node = &self.nodes[n];
        let last_epoch = node.log.last().map_or(0, |r| r.epoch);
        match self.config.election {
            ElectionRule::NextSeq => (0, node.log.len() as u64),
            ElectionRule::EpochThenNextSeq => (last_epoch, node.log.len() as u64),
        }
    }

    /// The lease: renewed by a holder that reaches the store; lost after `lease` ticks without;
    /// then the best candidate takes it.
    fn lease_step(&mut self) {
        for n in 0..self.nodes.len() {
            if self.reaches_store(n) {
                self.nodes[n].reachable_for += 1;
                self.nodes[n].advert = Some((self.position(n), self.now));
            } else {
                self.nodes[n].reachable_for = 0;
            }
        }
        match self.holder {
            Some(h) if self.reaches_store(h) && self.nodes[h].primary.is_some() => {
                self.unrenewed = 0;
            }
            Some(h) => {
                self.unrenewed += 1;
                if self.unrenewed >= self.config.lease {
                    self.lose_lease(h, "the lease expired unrenewed");
                }
            }
            None => {}
        }
        if self.holder.is_none() && self.etcd_down == 0 {
            self.elect(None);
        }
    }

    /// One tick: the lease, the producers, the primaries' reconnects, the network.
    fn tick(&mut self, faults: bool) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].fence_at.is_some_and(|t| t <= self.now) {
                self.events.push(format!(
                    "t={} {} fences itself after its pause",
                    self.now, self.nodes[n].name
                ));
                self.demote(n, "fenced: lease lost");
            }
        }
        if self.config.keepalive > 0 {
            let keepalive = self.config.keepalive;
            let now = self.now;
            let stalled = |n: &Node| n.paused_since.is_some_and(|t| now >= t + keepalive);
            for c in 0..self.conns.len() {
                let conn = &self.conns[c];
                if conn.open
                    && (stalled(&self.nodes[conn.primary]) || stalled(&self.nodes[conn.replica]))
                {
                    self.cut(c);
                }
            }
        }
        self.lease_step();
        self.producers_step(faults);
        self.reconnect_step();
        if faults && self.rng.chance(self.config.break_percent) {
            let open: Vec<usize> = (0..self.conns.len())
                .filter(|&c| self.conns[c].open)
                .collect();
            if !open.is_empty() {
                let c = open[self.rng.below(open.len() as u64) as usize];
                self.cut(c);
            }
        }
        self.deliver_step();
    }

    fn producers_step(&mut self, writes: bool) {
        for i in 0..self.producers.len() {
            let (n, dead) = (self.producers[i].node, self.producers[i].dead);
            if dead || !self.nodes[n].runs() {
                continue;
            }
            if let Some((seq, _, invoked)) = self.producers[i].pending
                && self.now >= invoked + self.config.ack_timeout
            {
                self.producers[i].pending = None;
                let (id, epoch) = (self.producers[i].id, self.nodes[n].epoch);
                self.emit(
                    OpKind::Unknown,
                    id,
                    seq,
                    n,
                    Some(epoch),
                    None,
                    Some("AckTimeout"),
                );
            }
            if self.producers[i].pending.is_some()
                || !writes
                || !self.rng.chance(self.config.write_percent)
            {
                continue;
            }
            let (id, seq) = (self.producers[i].id, self.producers[i].next);
            self.producers[i].next += 1;
            let epoch = self.nodes[n].epoch;
            self.emit(OpKind::Invoke, id, seq, n, Some(epoch), None, None);
            if self.nodes[n].primary.is_none() {
                let why = if self.nodes[n].is_primary {
                    "Fenced"
                } else {
                    "Fenced or ReadOnlyReplica"
                };
                self.emit(OpKind::Fail, id, seq, n, Some(epoch), None, Some(why));
                // A fenced producer stops; new ones start on the next primary.
                self.producers[i].dead = true;
                continue;
            }
            let jseq = self.nodes[n].log.len() as u64;
            let time = self.time();
            let crc = self.next_crc;
            self.next_crc += 1;
            self.nodes[n].log.push(Rec {
                seq: jseq,
                time,
                producer: id,
                pseq: seq,
                crc,
                epoch,
            });
            self.producers[i].pending = Some((seq, jseq, self.now));
            if self.config.bug == Some(Bug::AckBeforeReplicas) {
                self.producers[i].pending = None;
                self.emit(OpKind::Ok, id, seq, n, Some(epoch), Some(jseq), None);
            }
            let actions = match self.nodes[n].primary.as_mut() {
                Some(p) => p.leader.committed(jseq + 1),
                None => Vec::new(),
            };
            self.leader_actions(n, actions);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        kind: OpKind,
        producer: u64,
        seq: u64,
        node: usize,
        epoch: Option<u64>,
        journal_seq: Option<u64>,
        error: Option<&str>,
    ) {
        let time = self.time();
        self.history.push(Op {
            kind,
            f: Function::Enqueue,
            producer: Some(producer),
            seq: Some(seq),
            consumer: None,
            node: self.nodes[node].name.clone(),
            epoch,
            time,
            journal_seq,
            error: error.map(str::to_owned),
            at: history::At::default(),
        });
    }

    fn reconnect_step(&mut self) {
        for n in 0..self.nodes.len() {
            if !self.nodes[n].runs() {
                continue;
            }
            for r in 0..self.nodes.len() {
                let Some(prim) = self.nodes[n].primary.as_ref() else {
                    break;
                };
                if r == n
                    || prim.conns.contains_key(&r)
                    || prim.retry_at.get(&r).is_some_and(|&t| t > self.now)
                {
                    continue;
                }
                let c = self.conns.len();
                self.conns.push(Conn {
                    primary: n,
                    replica: r,
                    open: true,
                    closing: false,
                    stream: None,
                });
                let config = prim.leader.config();
                let hello = Msg::Hello {
                    epoch: config.epoch,
                    epoch_start: config.epoch_start,
                    lineage: self.nodes[n].lineage.clone(),
                };
                if let Some(prim) = self.nodes[n].primary.as_mut() {
                    prim.conns.insert(r, c);
                    prim.retry_at.remove(&r);
                }
                self.send(c, true, hello);
            }
        }
    }

    fn deliver_step(&mut self) {
        self.net.sort_by_key(|p| p.at);
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at > self.now {
                break;
            }
            let p = &self.net[i];
            let conn = &self.conns[p.conn];
            let (from, to) = if p.to_replica {
                (conn.primary, conn.replica)
            } else {
                (conn.replica, conn.primary)
            };
            let c = p.conn;
            if self.nodes[to].down > 0
                || self.nodes[from].down > 0 && !p.to_replica
                || self.nodes[to].isolated > 0
                || self.nodes[from].isolated > 0
            {
                self.cut(c);
                i = 0;
                continue;
            }
            if self.nodes[to].paused > 0 {
                i += 1;
                continue;
            }
            let packet = self.net.remove(i);
            if packet.to_replica {
                self.at_replica(packet.conn, packet.msg);
            } else {
                self.at_primary(packet.conn, packet.msg);
            }
            i = 0;
        }
    }

    /// `follow_epoch` of `replica_service.rs`: the state file says replica of `epoch`, with the
    /// follower's history.
    fn follow_epoch(&mut self, r: usize, epoch: u64) {
        let node = &mut self.nodes[r];
        node.epoch = epoch;
        node.is_primary = false;
        if let Some(f) = node.follower.as_ref() {
            node.lineage = f.lineage().clone();
        }
        node.follower_epoch = epoch;
    }

    fn at_replica(&mut self, c: usize, msg: Msg) {
        let r = self.conns[c].replica;
        match msg {
            Msg::Hello {
                epoch,
                epoch_start,
                lineage,
            } => {
                let node = &mut self.nodes[r];
                if node.is_primary && node.epoch >= epoch {
                    let epoch = node.epoch;
                    self.send(c, false, Msg::Refused { epoch });
                    return;
                }
                // `admit`: the follower held from an earlier stream stays while the node stayed
                // a replica of the same epoch; otherwise it is built afresh from the journal.
                let fresh =
                    node.follower.is_none() || node.is_primary || node.follower_epoch != node.epoch;
                if fresh {
                    node.follower = Some(Follower::new(
                        node.epoch,
                        node.log.len() as u64,
                        node.lineage.clone(),
                    ));
                    node.follower_epoch = node.epoch;
                }
                let Some(follower) = node.follower.as_mut() else {
                    return;
                };
                match follower.on_hello(epoch, epoch_start, &lineage) {
                    Ok(accepted) => {
                        if node.is_primary || node.primary.is_some() {
                            self.events.push(format!(
                                "t={} {} follows epoch {epoch}: steps down",
                                self.now, node.name
                            ));
                            if self.holder == Some(r) {
                                self.holder = None;
                            }
                            self.demote(r, "a newer primary's stream arrived");
                        }
                        let node = &mut self.nodes[r];
                        if let Some(from) = accepted.move_aside_from {
                            node.move_aside(from);
                        }
                        self.follow_epoch(r, epoch);
                        self.conns[c].stream = Some(accepted.stream);
                        let Some(f) = self.nodes[r].follower.as_ref() else {
                            return;
                        };
                        let (epoch, next_seq) = (f.epoch(), f.next_seq());
                        if let Some(old) = accepted.superseded
                            && let Some(oc) = (0..self.conns.len()).find(|&oc| {
                                oc != c
                                    && self.conns[oc].replica == r
                                    && self.conns[oc].stream == Some(old)
                            })
                        {
                            self.send(oc, false, Msg::Refused { epoch });
                        }
                        self.send(c, false, Msg::Subscribe { epoch, next_seq });
                    }
                    Err(_) => {
                        let epoch = follower.epoch();
                        self.send(c, false, Msg::Refused { epoch });
                    }
                }
            }
            Msg::Frame { header, records } => {
                let Some(stream) = self.conns[c].stream else {
                    return;
                };
                let node = &mut self.nodes[r];
                let Some(follower) = node.follower.as_mut() else {
                    // The process restarted: the stream is gone with it.
                    self.cut(c);
                    return;
                };
                // `apply_batch`: a node promoted while the stream was open refuses it, also once
                // fenced again.
                if node.epoch > follower.epoch() {
                    follower.on_promoted(node.epoch);
                }
                let log = &node.log;
                let decision = follower
                    .on_stream_frame(stream, &header, |s| log.get(s as usize).map(|x| x.crc));
                match decision {
                    FollowerDecision::Append {
                        move_aside_from,
                        skip,
                    } => {
                        if let Some(from) = move_aside_from {
                            let from = usize::try_from(from)
                                .map_or(node.log.len(), |f| f.min(node.log.len()));
                            node.moved_aside += node.log.len() - from;
                            node.log.truncate(from);
                        }
                        if let Some(first) = records.get(skip)
                            && first.seq != node.log.len() as u64
                        {
                            // The follower's idea of the tail is not the journal's: the records
                            // land where the follower says (a sink writing at its own offsets).
                            self.events.push(format!(
                                "t={} {} appends epoch {} records from seq {} but its journal ends at {}",
                                self.now,
                                node.name,
                                header.epoch,
                                first.seq,
                                node.log.len()
                            ));
                            node.log.truncate(first.seq as usize);
                        }
                        for rec in &records[skip..] {
                            if rec.seq == node.log.len() as u64 {
                                node.log.push(*rec);
                            }
                        }
                        let next_seq = match header.records.last() {
                            Some(last) => follower.appended(*last),
                            None => follower.next_seq(),
                        };
                        let epoch = follower.epoch();
                        self.follow_epoch(r, header.epoch);
                        self.send(c, false, Msg::Ack { epoch, next_seq });
                    }
                    FollowerDecision::Duplicate { durable } => {
                        let epoch = follower.epoch();
                        self.send(
                            c,
                            false,
                            Msg::Ack {
                                epoch,
                                next_seq: durable,
                            },
                        );
                    }
                    FollowerDecision::Refuse(Refusal::Gap { .. }) => self.cut(c),
                    FollowerDecision::Refuse(
                        Refusal::StaleEpoch { .. }
                        | Refusal::Superseded { .. }
                        | Refusal::Promoted { .. },
                    ) => {
                        if self.config.bug == Some(Bug::AcceptStaleFrames) && node.primary.is_none()
                        {
                            // The planted defect: written anyway, where the frame says.
                            if let Some(first) = records.first()
                                && first.seq <= node.log.len() as u64
                            {
                                node.log.truncate(first.seq as usize);
                                node.log.extend_from_slice(&records);
                                let next_seq = node.log.len() as u64;
                                self.send(
                                    c,
                                    false,
                                    Msg::Ack {
                                        epoch: header.epoch,
                                        next_seq,
                                    },
                                );
                                return;
                            }
                        }
                        let epoch = follower.epoch();
                        self.send(c, false, Msg::Refused { epoch });
                    }
                    FollowerDecision::Refuse(other) => {
                        self.events.push(format!(
                            "t={} {} refused a frame: {other}",
                            self.now, node.name
                        ));
                        self.cut(c);
                    }
                }
            }
            _ => {}
        }
    }

    fn at_primary(&mut self, c: usize, msg: Msg) {
        let (p, r) = (self.conns[c].primary, self.conns[c].replica);
        let name = self.nodes[r].name.clone();
        let Some(prim) = self.nodes[p].primary.as_mut() else {
            return;
        };
        if prim.conns.get(&r) != Some(&c) {
            return;
        }
        let actions = match msg {
            Msg::Subscribe { epoch, next_seq } => prim.leader.subscribe(&name, epoch, next_seq),
            Msg::Ack { epoch, next_seq } => prim.leader.ack(&name, epoch, next_seq),
            Msg::Refused { epoch } => {
                let actions = prim.leader.ack(&name, epoch, 0);
                if !actions
                    .iter()
                    .any(|a| matches!(a, LeaderAction::StepDown { .. }))
                {
                    // Superseded (or refused by a node promoted meanwhile): reconnect later.
                    self.cut(c);
                    return;
                }
                actions
            }
            _ => Vec::new(),
        };
        self.leader_actions(p, actions);
    }

    fn leader_actions(&mut self, n: usize, actions: Vec<LeaderAction>) {
        for action in actions {
            let Some(prim) = self.nodes[n].primary.as_ref() else {
                return;
            };
            match action {
                LeaderAction::Send { node, from, to } => {
                    let Some(r) = self.nodes.iter().position(|x| x.name == node) else {
                        continue;
                    };
                    let Some(&c) = prim.conns.get(&r) else {
                        continue;
                    };
                    let Some(records) = self.nodes[n].log.get(from as usize..to as usize) else {
                        continue;
                    };
                    let records = records.to_vec();
                    let ids = records
                        .iter()
                        .map(|x| RecordId {
                            seq: x.seq,
                            crc: x.crc,
                        })
                        .collect();
                    let header = prim.leader.frame_header(ids);
                    self.send(c, true, Msg::Frame { header, records });
                }
                LeaderAction::Acked { next_seq } => {
                    let epoch = self.nodes[n].epoch;
                    let mut oks = Vec::new();
                    for p in self.producers.iter_mut().filter(|p| p.node == n && !p.dead) {
                        if let Some((seq, jseq, _)) = p.pending
                            && jseq < next_seq
                        {
                            p.pending = None;
                            oks.push((p.id, seq, jseq));
                        }
                    }
                    for (id, seq, jseq) in oks {
                        self.emit(OpKind::Ok, id, seq, n, Some(epoch), Some(jseq), None);
                    }
                }
                LeaderAction::StepDown { epoch } => {
                    self.events.push(format!(
                        "t={} {} steps down: a node reported epoch {epoch}",
                        self.now, self.nodes[n].name
                    ));
                    if self.holder == Some(n) {
                        self.holder = None;
                    }
                    self.demote(n, "stepped down: a newer epoch");
                    return;
                }
            }
        }
    }

    /// One primary, holding the lease, and every other node running and holding its log.
    fn converged(&self) -> bool {
        let Some(h) = self.holder else {
            return false;
        };
        if self.nodes[h].primary.is_none() || !self.nodes[h].runs() {
            return false;
        }
        let log = &self.nodes[h].log;
        let idle = self.producers.iter().all(|p| p.dead || p.pending.is_none());
        idle && self.nodes.iter().all(|n| {
            n.runs() && n.log == *log && (n.primary.is_none() || n.name == self.nodes[h].name)
        })
    }

    fn finish(self, seed: u64, faults: Vec<Fault>, converged_in: Option<u64>) -> Outcome {
        let cat = |log: &[Rec]| -> String {
            log.iter()
                .map(|r| {
                    format!(
                        "{{\"seq\":{},\"time\":{},\"message\":{{\"producer\":{},\"seq\":{}}}}}\n",
                        r.seq, r.time, r.producer, r.pseq
                    )
                })
                .collect()
        };
        let p = self.primary_node();
        let mut history = String::new();
        for op in &self.history {
            if let Ok(line) = serde_json::to_string(op) {
                history.push_str(&line);
                history.push('\n');
            }
        }
        Outcome {
            seed,
            faults,
            history,
            primary: (self.nodes[p].name.clone(), cat(&self.nodes[p].log)),
            replicas: (0..self.nodes.len())
                .filter(|&n| n != p)
                .map(|n| (self.nodes[n].name.clone(), cat(&self.nodes[n].log)))
                .collect(),
            converged_in,
            events: self.events,
            moved_aside: self.nodes.iter().map(|n| n.moved_aside).sum(),
            elections: self.elections,
        }
    }
}

#[cfg(test)]
mod test;
