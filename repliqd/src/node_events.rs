//! The node's own events (`events:` in the config): every `interval_ms` the daemon looks at what
//! its metrics already hold (each replica's last report, the roles of the queues under the
//! persistence path, damaged queues) and appends a [`NodeEvent`] to a local queue on each
//! *change*: a replica lost is one event and its return another, a lag crossing the bound up
//! one and back under half the bound another. Any sink forwards them (the Slack sink's rules
//! on `kind` turn them into alerts); `repliq cat` reads them.
//!
//! The queue lives in a sub-directory of the persistence path (default `.node/events`), never
//! directly in it: the daemon replicates and elects every queue directly under the path, and a
//! queue created there takes the node's replication policy (a synchronous node would make each
//! event wait for the replicas, the very ones that may be lost). So the events queue is this
//! node's own: not replicated, not elected, asynchronous, synced to disk at each event.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use repliq::{Durability, JournalQueue, QueueError, QueueOptions};
use serde::Deserialize;

use crate::metrics::{ReplicaView, ReplicationMetrics};

/// A replica that never came up since its queue's replication started here is reported lost
/// once it has been down this long (a starting node's replicas connect within it).
pub const NEVER_UP_GRACE: Duration = Duration::from_secs(10);

/// Events kept in memory while the queue refuses them (a full disk), oldest dropped first.
const PENDING_LIMIT: usize = 10_000;

/// One event of the node, as the events queue stores it.
#[repliq::message(name = "repliq.NodeEvent")]
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    /// `replica_lost`, `replica_back`, `lag_above`, `lag_below`, `replica_left_behind`,
    /// `replica_resync`, `became_primary`, `stepped_down` or `queue_damaged`.
    pub kind: String,
    /// The node that saw it (this daemon's node name).
    pub node: String,
    /// The queue (its directory name under the persistence path).
    pub queue: String,
    /// The replica concerned, for the replica events.
    pub peer: Option<String>,
    /// The lag (in the unit of `bound`) for `lag_*`, the epoch for role changes.
    pub value: Option<i64>,
    /// The configured lag bound, for `lag_*`.
    pub bound: Option<i64>,
    /// What happened, in words (ready for a chat message).
    pub message: String,
    /// When the daemon saw it (nanoseconds since the Unix epoch).
    pub time_unix_nanos: u64,
}

fn default_queue() -> PathBuf {
    PathBuf::from(".node/events")
}

fn default_interval_ms() -> u64 {
    1000
}

/// `events:`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The events queue; a relative path is under `queue.persistence.path` (default
    /// `.node/events`). Not directly in the persistence path (see the module's comment).
    #[serde(default = "default_queue")]
    pub queue: PathBuf,
    /// How often the state is looked at (default 1000 ms; 10 ms to one hour).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// `lag_above` when a replica lacks more journal bytes than this, `lag_below` once it lacks
    /// at most half of it (default: no bound).
    #[serde(default)]
    pub lag_bound_bytes: Option<u64>,
    /// The same in records (with both bounds, either one crossed counts).
    #[serde(default)]
    pub lag_bound_records: Option<u64>,
}

impl EventsConfig {
    /// Checks the settings; `root` is `queue.persistence.path`.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] naming the key and the reason.
    pub fn validate(&self, root: &Path) -> Result<(), QueueError> {
        let bad =
            |key: &str, reason: &str| QueueError::InvalidConfig(format!("events.{key}: {reason}"));
        if !(10..=3_600_000).contains(&self.interval_ms) {
            return Err(bad("interval_ms", "must be between 10 and 3600000"));
        }
        if self.lag_bound_bytes == Some(0) {
            return Err(bad("lag_bound_bytes", "must be at least 1"));
        }
        if self.lag_bound_records == Some(0) {
            return Err(bad("lag_bound_records", "must be at least 1"));
        }
        let q = &self.queue;
        if q.as_os_str().is_empty() {
            return Err(bad("queue", "must not be empty"));
        }
        if q.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(bad("queue", "must not contain `.` or `..`"));
        }
        if self.path(root).parent() == Some(root) || q.components().count() < 2 {
            return Err(bad(
                "queue",
                "must be in a sub-directory (e.g. `.node/events`), not directly in \
                 queue.persistence.path: a queue there is replicated and takes the node's \
                 replication policy",
            ));
        }
        Ok(())
    }

    /// The events queue's directory.
    #[must_use]
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.queue)
    }
}

/// The lag bounds, and which one a lag crossed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagBounds {
    /// In journal bytes.
    pub bytes: Option<u64>,
    /// In records.
    pub records: Option<u64>,
}

impl LagBounds {
    /// The first bound `v` is above: (lag, bound, unit).
    fn above(self, v: &ReplicaView) -> Option<(u64, u64, &'static str)> {
        let bytes = self
            .bytes
            .zip(v.lag_bytes)
            .filter(|(b, lag)| lag > b)
            .map(|(b, lag)| (lag, b, "bytes"));
        let records = self
            .records
            .filter(|b| v.lag_records > *b)
            .map(|b| (v.lag_records, b, "records"));
        bytes.or(records)
    }

    /// At most half of every bound (the hysteresis: a lag hovering at the bound gives one
    /// event, not one per look).
    fn under_half(self, v: &ReplicaView) -> bool {
        self.bytes
            .is_none_or(|b| v.lag_bytes.is_some_and(|lag| lag <= b / 2))
            && self.records.is_none_or(|b| v.lag_records <= b / 2)
    }
}

/// What is remembered of one replica of one queue between looks.
#[derive(Debug, Clone)]
struct ReplicaEdges {
    first_seen: Instant,
    seen_up: bool,
    up: bool,
    lost_reported: bool,
    lag_above: bool,
    left_behind: u64,
    resyncs: u64,
}

/// Turns successive looks at the node's state into events on each change.
#[derive(Debug)]
pub struct EdgeDetector {
    node: String,
    bounds: LagBounds,
    replicas: BTreeMap<(String, String), ReplicaEdges>,
    /// Queue → primary here; `None` before the first look (which only sets the baseline).
    roles: Option<BTreeMap<String, bool>>,
    damaged: BTreeSet<String>,
}

/// One look at the node's state.
#[derive(Debug, Clone, Default)]
pub struct Look {
    /// Each (queue, replica) pair's last report.
    pub replicas: BTreeMap<(String, String), ReplicaView>,
    /// Each queue under the persistence path: primary here, and its epoch.
    pub roles: BTreeMap<String, (bool, u64)>,
    /// Damaged queues and why.
    pub damaged: BTreeMap<String, String>,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl EdgeDetector {
    /// A detector for node `node`.
    #[must_use]
    pub fn new(node: String, bounds: LagBounds) -> Self {
        EdgeDetector {
            node,
            bounds,
            replicas: BTreeMap::new(),
            roles: None,
            damaged: BTreeSet::new(),
        }
    }

    fn event(&self, kind: &str, queue: &str, peer: Option<&str>, message: String) -> NodeEvent {
        NodeEvent {
            kind: kind.to_owned(),
            node: self.node.clone(),
            queue: queue.to_owned(),
            peer: peer.map(ToOwned::to_owned),
            value: None,
            bound: None,
            message,
            time_unix_nanos: now_nanos(),
        }
    }

    /// The events between the previous look and `look`, taken at `now`.
    pub fn observe(&mut self, now: Instant, look: &Look) -> Vec<NodeEvent> {
        let mut out = Vec::new();
        self.replicas.retain(|k, _| look.replicas.contains_key(k));
        for ((queue, peer), v) in &look.replicas {
            let Some(e) = self.replicas.get(&(queue.clone(), peer.clone())).cloned() else {
                self.replicas.insert(
                    (queue.clone(), peer.clone()),
                    ReplicaEdges {
                        first_seen: now,
                        seen_up: v.up,
                        up: v.up,
                        lost_reported: false,
                        lag_above: false,
                        left_behind: v.left_behind,
                        resyncs: v.resyncs,
                    },
                );
                continue;
            };
            let mut e = e;
            let node = &self.node;
            let why = v
                .error
                .as_deref()
                .map_or_else(|| "not acknowledging in time".to_owned(), ToOwned::to_owned);
            if !v.up && !e.lost_reported {
                if e.up {
                    out.push(self.event(
                        "replica_lost",
                        queue,
                        Some(peer),
                        format!("{node}: replica {peer} of queue {queue} is lost ({why})"),
                    ));
                    e.lost_reported = true;
                } else if !e.seen_up && now.duration_since(e.first_seen) >= NEVER_UP_GRACE {
                    out.push(self.event(
                        "replica_lost",
                        queue,
                        Some(peer),
                        format!(
                            "{node}: replica {peer} of queue {queue} has not connected since \
                             the replication started ({why})"
                        ),
                    ));
                    e.lost_reported = true;
                }
            }
            if v.up && e.lost_reported {
                out.push(self.event(
                    "replica_back",
                    queue,
                    Some(peer),
                    format!("{node}: replica {peer} of queue {queue} is back"),
                ));
                e.lost_reported = false;
            }
            e.up = v.up;
            e.seen_up |= v.up;
            // Before its first subscription a replica counts as lacking everything: no lag
            // events until it was up once.
            if e.seen_up {
                if !e.lag_above
                    && let Some((lag, bound, unit)) = self.bounds.above(v)
                {
                    let mut ev = self.event(
                        "lag_above",
                        queue,
                        Some(peer),
                        format!(
                            "{node}: replica {peer} of queue {queue} lags {lag} {unit} behind \
                             (bound {bound})"
                        ),
                    );
                    ev.value = Some(as_i64(lag));
                    ev.bound = Some(as_i64(bound));
                    out.push(ev);
                    e.lag_above = true;
                } else if e.lag_above && self.bounds.under_half(v) {
                    let (lag, bound, unit) = match self.bounds.bytes {
                        Some(b) => (v.lag_bytes.unwrap_or(0), b, "bytes"),
                        None => (v.lag_records, self.bounds.records.unwrap_or(0), "records"),
                    };
                    let mut ev = self.event(
                        "lag_below",
                        queue,
                        Some(peer),
                        format!(
                            "{node}: replica {peer} of queue {queue} caught up to {lag} {unit} \
                             behind (bound {bound})"
                        ),
                    );
                    ev.value = Some(as_i64(lag));
                    ev.bound = Some(as_i64(bound));
                    out.push(ev);
                    e.lag_above = false;
                }
            }
            if v.left_behind > e.left_behind {
                out.push(self.event(
                    "replica_left_behind",
                    queue,
                    Some(peer),
                    format!(
                        "{node}: replica {peer} of queue {queue} fell so far behind that \
                         retention no longer keeps its records: it resyncs in full when back"
                    ),
                ));
            }
            if v.resyncs > e.resyncs {
                out.push(self.event(
                    "replica_resync",
                    queue,
                    Some(peer),
                    format!("{node}: replica {peer} of queue {queue} is resynced from the oldest segment"),
                ));
            }
            e.left_behind = v.left_behind;
            e.resyncs = v.resyncs;
            self.replicas.insert((queue.clone(), peer.clone()), e);
        }
        if let Some(before) = &self.roles {
            for (queue, &(primary, epoch)) in &look.roles {
                let node = &self.node;
                let ev = match before.get(queue) {
                    Some(false) if primary => Some(self.event(
                        "became_primary",
                        queue,
                        None,
                        format!("{node} became the primary of queue {queue} (epoch {epoch})"),
                    )),
                    Some(true) if !primary => Some(self.event(
                        "stepped_down",
                        queue,
                        None,
                        format!(
                            "{node} is no longer the primary of queue {queue} (fenced or \
                             demoted; epoch {epoch})"
                        ),
                    )),
                    _ => None,
                };
                if let Some(mut ev) = ev {
                    ev.value = Some(as_i64(epoch));
                    out.push(ev);
                }
            }
        }
        self.roles = Some(
            look.roles
                .iter()
                .map(|(q, (p, _))| (q.clone(), *p))
                .collect(),
        );
        for (queue, why) in &look.damaged {
            if self.damaged.insert(queue.clone()) {
                let node = &self.node;
                out.push(self.event(
                    "queue_damaged",
                    queue,
                    None,
                    format!("{node}: queue {queue} is damaged: {why}"),
                ));
            }
        }
        self.damaged.retain(|q| look.damaged.contains_key(q));
        out
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Opens (creating it and its parent directories if needed) the events queue at `path`: a
/// producer-only handle (it holds back no capacity for a reader), each event synced to disk.
///
/// # Errors
///
/// As [`QueueOptions::create`], or [`QueueError::Io`] creating the parent directory.
pub fn open_queue(path: &Path) -> Result<JournalQueue<NodeEvent>, QueueError> {
    if let Some(parent) = path.parent() {
        repliq::modes::create_dir_all(parent)
            .map_err(|e| QueueError::io(format!("creating {}", parent.display()), e))?;
    }
    QueueOptions::new()
        .producer()
        .durability(Durability::Sync)
        .segment_size(1 << 20)
        .create::<NodeEvent>(path)
}

/// The events task's state between looks (moved to the blocking pool for each look).
struct Watcher {
    queue: JournalQueue<NodeEvent>,
    scanner: crate::scan::QueueScanner,
    detector: EdgeDetector,
    pending: std::collections::VecDeque<NodeEvent>,
}

impl Watcher {
    fn look(&mut self, metrics: &ReplicationMetrics) {
        let mut look = Look {
            replicas: metrics.replica_views(),
            damaged: metrics
                .damaged_reasons
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            roles: BTreeMap::new(),
        };
        let before = self.detector.roles.clone().unwrap_or_default();
        for (dir, primary) in self.scanner.scan() {
            let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            // The epoch is read only when it is reported: at a change of role.
            let changed = before.get(&name).is_some_and(|p| *p != primary);
            let epoch = if changed {
                repliq::replication::ReplicationState::load(&dir).map_or(0, |s| s.epoch)
            } else {
                0
            };
            look.roles.insert(name, (primary, epoch));
        }
        for ev in self.detector.observe(Instant::now(), &look) {
            tracing::info!(kind = %ev.kind, queue = %ev.queue, peer = ev.peer.as_deref().unwrap_or("-"), "{}", ev.message);
            if self.pending.len() >= PENDING_LIMIT
                && let Some(dropped) = self.pending.pop_front()
            {
                tracing::error!(kind = %dropped.kind, queue = %dropped.queue, "the events queue refuses events: the oldest pending one is dropped");
            }
            self.pending.push_back(ev);
        }
        while let Some(ev) = self.pending.front() {
            match self.queue.enqueue(ev) {
                Ok(_) => {
                    self.pending.pop_front();
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue.path().display(), error = %e, pending = self.pending.len(), "cannot write a node event; trying again at the next look");
                    break;
                }
            }
        }
    }
}

/// Looks at the node's state every `cfg.interval_ms` and writes the events into `queue`, until
/// `stop`.
///
/// # Errors
///
/// A message if a look panicked (a bug).
pub async fn run(
    cfg: EventsConfig,
    node: String,
    root: PathBuf,
    queue: JournalQueue<NodeEvent>,
    metrics: ReplicationMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let bounds = LagBounds {
        bytes: cfg.lag_bound_bytes,
        records: cfg.lag_bound_records,
    };
    let mut watcher = Some(Watcher {
        queue,
        scanner: crate::scan::QueueScanner::new(root),
        detector: EdgeDetector::new(node, bounds),
        pending: std::collections::VecDeque::new(),
    });
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let Some(mut w) = watcher.take() else {
            return Ok(());
        };
        let m = metrics.clone();
        // Scanning the root and writing the queue are blocking file I/O.
        watcher = Some(
            tokio::task::spawn_blocking(move || {
                w.look(&m);
                w
            })
            .await
            .map_err(|e| format!("a look at the node's state failed: {e}"))?,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(up: bool, lag_records: u64, lag_bytes: u64) -> ReplicaView {
        ReplicaView {
            up,
            lag_records,
            lag_bytes: Some(lag_bytes),
            ..ReplicaView::default()
        }
    }

    fn look(v: ReplicaView) -> Look {
        Look {
            replicas: [(("orders".to_owned(), "b".to_owned()), v)].into(),
            ..Look::default()
        }
    }

    fn kinds(events: &[NodeEvent]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn one_event_per_change_of_a_replica() {
        let mut d = EdgeDetector::new(
            "a".into(),
            LagBounds {
                bytes: Some(1000),
                records: None,
            },
        );
        let t = Instant::now();
        assert!(d.observe(t, &look(view(true, 0, 0))).is_empty());
        assert!(d.observe(t, &look(view(true, 5, 500))).is_empty());
        let above = d.observe(t, &look(view(true, 50, 5000)));
        assert_eq!(kinds(&above), ["lag_above"]);
        assert_eq!((above[0].value, above[0].bound), (Some(5000), Some(1000)));
        assert_eq!(above[0].peer.as_deref(), Some("b"));
        // Still above, then between half the bound and the bound: nothing new.
        assert!(d.observe(t, &look(view(true, 60, 6000))).is_empty());
        assert!(d.observe(t, &look(view(true, 9, 900))).is_empty());
        assert_eq!(
            kinds(&d.observe(t, &look(view(true, 1, 100)))),
            ["lag_below"]
        );
        let lost = d.observe(t, &look(view(false, 1, 100)));
        assert_eq!(kinds(&lost), ["replica_lost"]);
        assert!(
            lost[0].message.contains("replica b of queue orders"),
            "{}",
            lost[0].message
        );
        assert!(d.observe(t, &look(view(false, 1, 100))).is_empty());
        assert_eq!(
            kinds(&d.observe(t, &look(view(true, 0, 0)))),
            ["replica_back"]
        );
        assert!(d.observe(t, &look(view(true, 0, 0))).is_empty());
    }

    #[test]
    fn a_replica_never_up_is_lost_after_the_grace_only() {
        let mut d = EdgeDetector::new("a".into(), LagBounds::default());
        let t = Instant::now();
        // It lacks everything before it subscribed: no lag event either.
        assert!(
            d.observe(t, &look(view(false, 1 << 30, 1 << 40)))
                .is_empty()
        );
        assert!(
            d.observe(t + NEVER_UP_GRACE / 2, &look(view(false, 1, 1)))
                .is_empty()
        );
        let lost = d.observe(t + NEVER_UP_GRACE, &look(view(false, 1, 1)));
        assert_eq!(kinds(&lost), ["replica_lost"]);
        assert!(
            d.observe(t + NEVER_UP_GRACE * 2, &look(view(false, 1, 1)))
                .is_empty()
        );
        assert_eq!(
            kinds(&d.observe(t + NEVER_UP_GRACE * 2, &look(view(true, 0, 0)))),
            ["replica_back"]
        );
    }

    #[test]
    fn role_changes_after_the_first_look() {
        let mut d = EdgeDetector::new("a".into(), LagBounds::default());
        let t = Instant::now();
        let roles = |p: bool, epoch: u64| Look {
            roles: [("orders".to_owned(), (p, epoch))].into(),
            ..Look::default()
        };
        assert!(
            d.observe(t, &roles(false, 1)).is_empty(),
            "the first look is the baseline"
        );
        let up = d.observe(t, &roles(true, 2));
        assert_eq!(kinds(&up), ["became_primary"]);
        assert_eq!(up[0].value, Some(2));
        assert!(d.observe(t, &roles(true, 2)).is_empty());
        assert_eq!(kinds(&d.observe(t, &roles(false, 2))), ["stepped_down"]);
    }

    #[test]
    fn the_queue_must_be_in_a_sub_directory() {
        let root = Path::new("/data");
        let cfg = |q: &str| EventsConfig {
            queue: q.into(),
            interval_ms: 1000,
            lag_bound_bytes: None,
            lag_bound_records: None,
        };
        cfg(".node/events").validate(root).unwrap();
        cfg("/elsewhere/events").validate(root).unwrap();
        for bad in ["events", "/data/events", "../x/events", ""] {
            let e = cfg(bad).validate(root).unwrap_err().to_string();
            assert!(e.contains("events.queue"), "{bad}: {e}");
        }
    }
}
