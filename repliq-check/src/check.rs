//! The checks: what a history and the final journals must satisfy (`docs/CHECKER.md`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::Error;
use crate::history::{Function, Kind, Op};
use crate::journal::{Journal, Record};

/// A broken promise, with the operations and records that show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Anomaly {
    /// An acknowledged enqueue whose message is not in the primary's journal.
    Lost {
        /// The invocation.
        invoke: Op,
        /// The acknowledgement.
        ok: Op,
    },
    /// An acknowledged enqueue whose message is in the journal, but not at the sequence number
    /// the client was given.
    AckedSeqChanged {
        /// The acknowledgement (its `journal_seq` is what the client was told).
        ok: Op,
        /// Where the message is.
        found: Record,
    },
    /// A record no client attempted to write (or read a message no client attempted to write).
    NotAttempted {
        /// The record in the journal, if it came from there.
        record: Option<Record>,
        /// The dequeue that returned it, if it came from there.
        dequeue: Option<Op>,
    },
    /// A message whose every enqueue failed (certainly not written) is in the journal.
    FailedButPresent {
        /// The failure.
        fail: Op,
        /// The record.
        record: Record,
    },
    /// A message stored more often than its producer tried to write it.
    Duplicate {
        /// The records holding it.
        records: Vec<Record>,
        /// How many times the client invoked the enqueue.
        attempts: usize,
    },
    /// A consumer received a message again after it had acknowledged it: more than the
    /// at-least-once redelivery allows (redelivery is allowed only before the acknowledgement).
    RedeliveredAfterAck {
        /// The acknowledgement.
        ack: Op,
        /// The later delivery.
        dequeue: Op,
    },
    /// A record of the primary's journal that a consumer which read that journal to its end
    /// never received: at-least-once delivery broken (a consumer that skipped it).
    Undelivered {
        /// The consumer (cursor name).
        consumer: String,
        /// The record.
        record: Record,
        /// The enqueue's acknowledgement, if the producer was told it was written.
        ok: Option<Op>,
        /// How many of the journal's records this consumer never received in all.
        missing: usize,
    },
    /// Two messages of one producer stored in the opposite order of the producer's sequence.
    Order {
        /// The earlier record (in the journal), with the later producer sequence.
        first: Record,
        /// The later record, with the smaller producer sequence.
        second: Record,
    },
    /// A write of an older epoch took effect after a newer epoch had acknowledged a write: two
    /// primaries at once.
    SplitBrain {
        /// The newer epoch's first acknowledged enqueue.
        newer_first_ok: Op,
        /// The older epoch's enqueue, invoked after `newer_first_ok` completed.
        older: Op,
        /// Its record in the journal, written after `newer_first_ok` completed, if that is how it
        /// was found.
        record: Option<Record>,
    },
    /// A replica's record differs from the primary's at the same sequence number (or the primary
    /// has no record there).
    ReplicaDiverged {
        /// The replica's node name.
        replica: String,
        /// The replica's record.
        record: Record,
        /// The primary's record at that sequence, if any.
        primary: Option<Record>,
        /// How many of the replica's records differ in all.
        differing: usize,
    },
}

impl Anomaly {
    /// A short stable name for the kind (counted in reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::Lost { .. } => "lost",
            Anomaly::AckedSeqChanged { .. } => "acked-seq-changed",
            Anomaly::NotAttempted { .. } => "not-attempted",
            Anomaly::FailedButPresent { .. } => "failed-but-present",
            Anomaly::Duplicate { .. } => "duplicate",
            Anomaly::RedeliveredAfterAck { .. } => "redelivered-after-ack",
            Anomaly::Undelivered { .. } => "undelivered",
            Anomaly::Order { .. } => "order",
            Anomaly::SplitBrain { .. } => "split-brain",
            Anomaly::ReplicaDiverged { .. } => "replica-diverged",
        }
    }
}

fn rec(r: &Record) -> String {
    format!(
        "{}: seq {} time {} message {}",
        r.at, r.seq, r.time, r.message
    )
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind())?;
        match self {
            Anomaly::Lost { invoke, ok } => write!(
                f,
                "acknowledged enqueue not in the primary's journal\n    {invoke}\n    {ok}"
            ),
            Anomaly::AckedSeqChanged { ok, found } => write!(
                f,
                "acknowledged at one sequence, stored at another\n    {ok}\n    {}",
                rec(found)
            ),
            Anomaly::NotAttempted { record, dequeue } => {
                write!(f, "no client attempted this message")?;
                if let Some(r) = record {
                    write!(f, "\n    {}", rec(r))?;
                }
                if let Some(d) = dequeue {
                    write!(f, "\n    {d}")?;
                }
                Ok(())
            }
            Anomaly::FailedButPresent { fail, record } => write!(
                f,
                "an enqueue that failed is stored\n    {fail}\n    {}",
                rec(record)
            ),
            Anomaly::Duplicate { records, attempts } => {
                write!(
                    f,
                    "stored {} times, attempted {attempts} times",
                    records.len()
                )?;
                for r in records {
                    write!(f, "\n    {}", rec(r))?;
                }
                Ok(())
            }
            Anomaly::RedeliveredAfterAck { ack, dequeue } => write!(
                f,
                "delivered again after the consumer acknowledged it\n    {ack}\n    {dequeue}"
            ),
            Anomaly::Undelivered {
                consumer,
                record,
                ok,
                missing,
            } => {
                write!(
                    f,
                    "consumer {consumer} read the journal to its end but never received {missing} of its records; first:\n    {}",
                    rec(record)
                )?;
                match ok {
                    Some(ok) => write!(f, "\n    acknowledged: {ok}"),
                    None => write!(
                        f,
                        "\n    (its enqueue's outcome was unknown to the producer)"
                    ),
                }
            }
            Anomaly::Order { first, second } => write!(
                f,
                "one producer's messages stored out of order\n    {}\n    {}",
                rec(first),
                rec(second)
            ),
            Anomaly::SplitBrain {
                newer_first_ok,
                older,
                record,
            } => {
                write!(
                    f,
                    "an older epoch's write after a newer epoch's first acknowledgement\n    newer: {newer_first_ok}\n    older: {older}"
                )?;
                if let Some(r) = record {
                    write!(f, "\n    stored: {}", rec(r))?;
                }
                Ok(())
            }
            Anomaly::ReplicaDiverged {
                replica,
                record,
                primary,
                differing,
            } => {
                write!(
                    f,
                    "replica {replica} differs from the primary at {differing} sequence(s); first:\n    replica: {}",
                    rec(record)
                )?;
                match primary {
                    Some(p) => write!(f, "\n    primary: {}", rec(p)),
                    None => write!(f, "\n    primary: no record at seq {}", record.seq),
                }
            }
        }
    }
}

/// What was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// History lines read.
    pub ops: usize,
    /// Enqueue invocations (retries count each time).
    pub enqueues: usize,
    /// Acknowledged enqueues.
    pub ok: usize,
    /// Failed enqueues (certainly not written).
    pub failed: usize,
    /// Enqueues with an unknown outcome (including invocations that never completed).
    pub unknown: usize,
    /// Of those, stored in the primary's journal.
    pub unknown_present: usize,
    /// Of those, not stored.
    pub unknown_absent: usize,
    /// Records in the primary's journal.
    pub records: usize,
    /// Extra copies of retried messages (allowed: the client tried more than once).
    pub allowed_duplicates: usize,
    /// Completed dequeues.
    pub dequeues: usize,
    /// Redeliveries before an acknowledgement (allowed by at-least-once).
    pub redeliveries: usize,
    /// Completed acknowledgements of dequeued messages.
    pub acks: usize,
    /// Dequeues of a message the primary's final journal does not hold (an unacknowledged
    /// write read on a primary that was then moved aside: allowed, its outcome was unknown).
    pub dequeued_absent: usize,
    /// Consumers that read the primary's journal to its end (checked for `undelivered`).
    pub drained: usize,
    /// Replica journals compared with the primary's.
    pub replicas: usize,
    /// Replica records compared.
    pub replica_records: usize,
    /// Acknowledged enqueues of an asynchronous queue missing from the final journal (see
    /// [`Report::for_asynchronous_queue`]; 0 for a synchronous one, whose losses are anomalies).
    pub lost_unreplicated: usize,
}

/// The verdict, the counts and every anomaly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// What was checked.
    pub counts: Counts,
    /// What is wrong (empty: the history is valid).
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// The report for an asynchronous queue, whose acknowledgement promises the primary's local
    /// commit only: an acknowledged record that a failover set aside (it never reached the
    /// replica that took over) is allowed, counted in `lost_unreplicated` instead of being a
    /// `lost` anomaly. Every other promise (no duplicates beyond retries, order, no split
    /// brain, replicas equal to the primary, consumers) stays.
    #[must_use]
    pub fn for_asynchronous_queue(mut self) -> Report {
        let before = self.anomalies.len();
        self.anomalies
            .retain(|a| !matches!(a, Anomaly::Lost { .. }));
        self.counts.lost_unreplicated += before - self.anomalies.len();
        self
    }

    /// No anomaly.
    pub fn valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Anomalies by kind, for summaries.
    pub fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for a in &self.anomalies {
            *m.entry(a.kind()).or_default() += 1;
        }
        m
    }

    /// One line: the verdict and the counts (what the fault scheduler parses).
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let kinds: Vec<String> = self
            .by_kind()
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "verdict {} ops {} enqueues {} ok {} failed {} unknown {} (present {}, absent {}) records {} allowed-duplicates {} dequeues {} redeliveries {} acks {} dequeued-absent {} drained {} replicas {} replica-records {} lost-unreplicated {} anomalies {}{}{}",
            if self.valid() { "valid" } else { "INVALID" },
            c.ops,
            c.enqueues,
            c.ok,
            c.failed,
            c.unknown,
            c.unknown_present,
            c.unknown_absent,
            c.records,
            c.allowed_duplicates,
            c.dequeues,
            c.redeliveries,
            c.acks,
            c.dequeued_absent,
            c.drained,
            c.replicas,
            c.replica_records,
            c.lost_unreplicated,
            self.anomalies.len(),
            if kinds.is_empty() { "" } else { " " },
            kinds.join(" "),
        )
    }
}

/// One enqueue attempt: its invocation and, if it completed, its completion.
#[derive(Debug)]
struct Attempt<'a> {
    invoke: &'a Op,
    done: Option<&'a Op>,
}

impl Attempt<'_> {
    fn kind(&self) -> Kind {
        self.done.map_or(Kind::Unknown, |d| d.kind)
    }

    /// The epoch the write was made in, when the client saw the same epoch before and after.
    fn certain_epoch(&self) -> Option<u64> {
        let done = self.done?;
        (self.invoke.epoch.is_some() && self.invoke.epoch == done.epoch)
            .then_some(self.invoke.epoch)?
    }
}

/// Checks `history` against the primary's final journal and the replicas' (each read *before*
/// the primary's, so that a replica can never legitimately be ahead of it).
pub fn check(history: &[Op], primary: &Journal, replicas: &[Journal]) -> Result<Report, Error> {
    check_with(history, primary, replicas, &[])
}

/// [`check`], and for each consumer named in `drained` (one that read the primary's final
/// journal to its end after the last write), that it received every record of that journal.
pub fn check_with(
    history: &[Op],
    primary: &Journal,
    replicas: &[Journal],
    drained: &[String],
) -> Result<Report, Error> {
    let mut report = Report::default();
    report.counts.ops = history.len();
    report.counts.records = primary.records.len();

    // Enqueue attempts per message: a completion ends the latest open invocation of its key.
    let mut attempts: HashMap<(u64, u64), Vec<Attempt<'_>>> = HashMap::new();
    for op in history.iter().filter(|o| o.f == Function::Enqueue) {
        let key = op.key().ok_or_else(|| Error::Invalid {
            at: op.at.clone(),
            message: "an enqueue without producer and seq".to_owned(),
        })?;
        let list = attempts.entry(key).or_default();
        if op.kind == Kind::Invoke {
            list.push(Attempt {
                invoke: op,
                done: None,
            });
            continue;
        }
        match list.iter_mut().rev().find(|a| a.done.is_none()) {
            Some(a) => a.done = Some(op),
            None => {
                return Err(Error::Invalid {
                    at: op.at.clone(),
                    message: format!(
                        "a completion of producer {} seq {} without an open invocation",
                        key.0, key.1
                    ),
                });
            }
        }
    }

    let mut stored: HashMap<(u64, u64), Vec<&Record>> = HashMap::new();
    for r in &primary.records {
        match r.key() {
            Some(k) => stored.entry(k).or_default().push(r),
            None => report.anomalies.push(Anomaly::NotAttempted {
                record: Some(r.clone()),
                dequeue: None,
            }),
        }
    }

    check_enqueues(&attempts, &stored, &mut report);
    for r in &primary.records {
        if let Some(k) = r.key()
            && !attempts.contains_key(&k)
        {
            report.anomalies.push(Anomaly::NotAttempted {
                record: Some(r.clone()),
                dequeue: None,
            });
        }
    }
    check_order(primary, &mut report);
    check_split_brain(&attempts, &stored, &mut report);
    check_consumers(history, &attempts, &stored, &mut report);
    for consumer in drained {
        check_delivered(history, consumer, primary, &attempts, &mut report);
    }
    for replica in replicas {
        check_replica(primary, replica, &mut report);
    }
    Ok(report)
}

fn check_enqueues(
    attempts: &HashMap<(u64, u64), Vec<Attempt<'_>>>,
    stored: &HashMap<(u64, u64), Vec<&Record>>,
    report: &mut Report,
) {
    let mut keys: Vec<_> = attempts.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let list = &attempts[&key];
        let found = stored.get(&key).map_or(&[][..], Vec::as_slice);
        report.counts.enqueues += list.len();
        let mut any_ok = false;
        let mut any_unknown = false;
        for a in list {
            match a.kind() {
                Kind::Ok => {
                    report.counts.ok += 1;
                    any_ok = true;
                    let Some(ok) = a.done else { continue };
                    if found.is_empty() {
                        report.anomalies.push(Anomaly::Lost {
                            invoke: a.invoke.clone(),
                            ok: ok.clone(),
                        });
                    } else if !found.iter().any(|r| Some(r.seq) == ok.journal_seq) {
                        report.anomalies.push(Anomaly::AckedSeqChanged {
                            ok: ok.clone(),
                            found: found[0].clone(),
                        });
                    }
                }
                Kind::Fail => report.counts.failed += 1,
                Kind::Unknown | Kind::Invoke => {
                    report.counts.unknown += 1;
                    any_unknown = true;
                }
            }
        }
        if !any_ok && any_unknown {
            if found.is_empty() {
                report.counts.unknown_absent += 1;
            } else {
                report.counts.unknown_present += 1;
            }
        }
        if !any_ok
            && !any_unknown
            && let (Some(r), Some(fail)) = (found.first(), list.iter().find_map(|a| a.done))
        {
            report.anomalies.push(Anomaly::FailedButPresent {
                fail: fail.clone(),
                record: (*r).clone(),
            });
        }
        if found.len() > 1 {
            if found.len() > list.len() {
                report.anomalies.push(Anomaly::Duplicate {
                    records: found.iter().map(|r| (*r).clone()).collect(),
                    attempts: list.len(),
                });
            } else {
                report.counts.allowed_duplicates += found.len() - 1;
            }
        }
    }
}

fn check_order(primary: &Journal, report: &mut Report) {
    // Per producer: the record with the highest producer sequence so far.
    let mut highest: HashMap<u64, &Record> = HashMap::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for r in &primary.records {
        let (Some(p), Some(s)) = (r.producer, r.pseq) else {
            continue;
        };
        if !seen.insert((p, s)) {
            continue; // a copy: counted by the duplicate check
        }
        match highest.get(&p) {
            Some(h) if h.pseq > Some(s) => report.anomalies.push(Anomaly::Order {
                first: (*h).clone(),
                second: r.clone(),
            }),
            _ => {
                highest.insert(p, r);
            }
        }
    }
}

fn check_split_brain(
    attempts: &HashMap<(u64, u64), Vec<Attempt<'_>>>,
    stored: &HashMap<(u64, u64), Vec<&Record>>,
    report: &mut Report,
) {
    // The first acknowledgement of each epoch (by completion time).
    let mut first_ok: BTreeMap<u64, &Op> = BTreeMap::new();
    for a in attempts.values().flatten() {
        if let (Kind::Ok, Some(e), Some(done)) = (a.kind(), a.certain_epoch(), a.done) {
            let slot = first_ok.entry(e).or_insert(done);
            if done.time < slot.time {
                *slot = done;
            }
        }
    }
    // For each epoch, the earliest first acknowledgement of any newer epoch (a handful of
    // epochs: a scan each time is fine).
    let newer_than = |e: u64| -> Option<&Op> {
        first_ok
            .range(e + 1..)
            .map(|(_, op)| *op)
            .min_by_key(|o| o.time)
    };
    let mut keys: Vec<_> = attempts.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        for a in &attempts[&key] {
            let Some(e) = a.invoke.epoch else { continue };
            let Some(n) = newer_than(e) else { continue };
            // Acknowledged although invoked after the newer epoch had acknowledged a write.
            if a.kind() == Kind::Ok && a.certain_epoch() == Some(e) && a.invoke.time > n.time {
                report.anomalies.push(Anomaly::SplitBrain {
                    newer_first_ok: n.clone(),
                    older: a.done.unwrap_or(a.invoke).clone(),
                    record: None,
                });
                continue;
            }
            // Stored, written (by the writer's clock) after the newer epoch's acknowledgement.
            if let Some(r) = stored
                .get(&key)
                .and_then(|rs| rs.iter().find(|r| r.time > n.time))
            {
                report.anomalies.push(Anomaly::SplitBrain {
                    newer_first_ok: n.clone(),
                    older: a.done.unwrap_or(a.invoke).clone(),
                    record: Some((*r).clone()),
                });
            }
        }
    }
}

fn check_consumers(
    history: &[Op],
    attempts: &HashMap<(u64, u64), Vec<Attempt<'_>>>,
    stored: &HashMap<(u64, u64), Vec<&Record>>,
    report: &mut Report,
) {
    let mut by_consumer: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history
        .iter()
        .filter(|o| o.f != Function::Enqueue && o.kind == Kind::Ok)
    {
        if let Some(c) = op.consumer.as_deref() {
            by_consumer.entry(c).or_default().push(op);
        }
    }
    for ops in by_consumer.values_mut() {
        ops.sort_by_key(|o| o.time); // stable: equal times keep history order
        let mut delivered: HashSet<(u64, u64)> = HashSet::new();
        let mut acked: HashMap<(u64, u64), &Op> = HashMap::new();
        for op in ops.iter() {
            let Some(key) = op.key() else { continue };
            match op.f {
                Function::Dequeue => {
                    report.counts.dequeues += 1;
                    if !stored.contains_key(&key) {
                        report.counts.dequeued_absent += 1;
                    }
                    if !attempts.contains_key(&key) {
                        report.anomalies.push(Anomaly::NotAttempted {
                            record: None,
                            dequeue: Some((*op).clone()),
                        });
                    }
                    if let Some(ack) = acked.get(&key) {
                        report.anomalies.push(Anomaly::RedeliveredAfterAck {
                            ack: (*ack).clone(),
                            dequeue: (*op).clone(),
                        });
                    } else if !delivered.insert(key) {
                        report.counts.redeliveries += 1;
                    }
                }
                Function::Ack => {
                    report.counts.acks += 1;
                    acked.insert(key, op);
                }
                Function::Enqueue => {}
            }
        }
    }
}

fn check_delivered(
    history: &[Op],
    consumer: &str,
    primary: &Journal,
    attempts: &HashMap<(u64, u64), Vec<Attempt<'_>>>,
    report: &mut Report,
) {
    report.counts.drained += 1;
    let received: HashSet<(u64, u64)> = history
        .iter()
        .filter(|o| {
            o.f == Function::Dequeue
                && o.kind == Kind::Ok
                && o.consumer.as_deref() == Some(consumer)
        })
        .filter_map(Op::key)
        .collect();
    let missing: Vec<&Record> = primary
        .records
        .iter()
        .filter(|r| r.key().is_some_and(|k| !received.contains(&k)))
        .collect();
    let Some(first) = missing.first() else {
        return;
    };
    let ok = first.key().and_then(|k| {
        attempts
            .get(&k)?
            .iter()
            .find(|a| a.kind() == Kind::Ok)
            .and_then(|a| a.done)
    });
    report.anomalies.push(Anomaly::Undelivered {
        consumer: consumer.to_owned(),
        record: (*first).clone(),
        ok: ok.cloned(),
        missing: missing.len(),
    });
}

fn check_replica(primary: &Journal, replica: &Journal, report: &mut Report) {
    report.counts.replicas += 1;
    let by_seq: HashMap<u64, &Record> = primary.records.iter().map(|r| (r.seq, r)).collect();
    let mut first: Option<(&Record, Option<&Record>)> = None;
    let mut differing = 0;
    for r in &replica.records {
        report.counts.replica_records += 1;
        let p = by_seq.get(&r.seq).copied();
        let same = p.is_some_and(|p| p.time == r.time && p.message == r.message);
        if !same {
            differing += 1;
            first.get_or_insert((r, p));
        }
    }
    if let Some((record, primary)) = first {
        report.anomalies.push(Anomaly::ReplicaDiverged {
            replica: replica.node.clone(),
            record: record.clone(),
            primary: primary.cloned(),
            differing,
        });
    }
}
