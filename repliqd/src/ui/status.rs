//! The status document of `/api/v1/status`: what the console page and `repliq top` show. Its
//! fields are documented in `docs/OBSERVABILITY.md` ("The live console").

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use super::history::Failover;
use super::history::History;
use super::samples::Samples;

/// One node's state, as served by `/api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The node's name (`NODE_NAME`).
    pub node: String,
    /// The daemon's version.
    pub version: String,
    /// When the document was built, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// What `/readyz` answers: `true` for 200.
    pub ready: bool,
    /// `/readyz`'s lines after the first: why the node is not ready, replicas down, damaged queues.
    pub readiness: Vec<String>,
    /// The file system of the persistence path, when it can be read.
    pub volume: Option<Volume>,
    /// Every queue under the persistence path, by name.
    pub queues: Vec<QueueStatus>,
    /// The failovers this daemon saw since it started (a queue's epoch grew), newest first, at
    /// most [`super::FAILOVERS_KEPT`].
    pub failovers: Vec<Failover>,
}

/// The file system holding the persistence path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Its size.
    pub size_bytes: u64,
    /// What queues may still use.
    pub free_bytes: u64,
}

/// One queue on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue's directory name under the persistence path.
    pub name: String,
    /// This node's role for the queue: `primary` or `replica` (`null` if unknown).
    pub role: Option<String>,
    /// The queue's replication epoch on this node.
    pub epoch: Option<u64>,
    /// The first sequence number of that epoch.
    pub epoch_start: Option<u64>,
    /// The primary's node name, when known.
    pub primary: Option<String>,
    /// Records committed since the queue was created (`repliq_enqueued_records_total`).
    pub enqueued_records: u64,
    /// Records committed per second over the last few seconds (`null` until two samples).
    pub enqueue_rate: Option<f64>,
    /// Segment files.
    pub segments: u64,
    /// Bytes of its files on disk.
    pub disk_bytes: u64,
    /// Found damaged on this node (`/readyz` says why).
    pub damaged: bool,
    /// The consumer cursors (a replica's cursor on the primary is `replica:NODE`).
    pub consumers: Vec<ConsumerStatus>,
    /// The queue's replication from this node (`null` unless this node replicates it).
    pub replication: Option<ReplicationStatus>,
    /// The replicas this node streams the queue to.
    pub replicas: Vec<ReplicaStatus>,
    /// The queue's election on this node (`null` without automatic failover).
    pub election: Option<ElectionStatus>,
}

/// One consumer cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerStatus {
    /// The cursor's name.
    pub name: String,
    /// Records consumed (`repliq_dequeued_records_total`).
    pub dequeued_records: u64,
    /// Records consumed per second over the last few seconds (`null` until two samples).
    pub dequeue_rate: Option<f64>,
    /// Records written but not consumed yet (`repliq_backlog_records`).
    pub backlog_records: u64,
}

/// The replication of a queue this node is primary of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Acknowledgements a synchronous enqueue needs (0: asynchronous).
    pub required_acks: u64,
    /// Replicas up.
    pub replicas_up: u64,
    /// Fewer replicas up than required.
    pub degraded: bool,
}

/// One replica of a queue this node is primary of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The replica's node name.
    pub name: String,
    /// Streams and acknowledges in time.
    pub up: bool,
    /// Committed records it does not hold yet.
    pub lag_records: u64,
    /// Age of the oldest record it does not hold yet.
    pub lag_seconds: f64,
    /// Records it acknowledged.
    pub replicated_records: u64,
    /// Journal bytes sent to it.
    pub replicated_bytes: u64,
    /// Times it was declared lost.
    pub lost: u64,
    /// Why it is down, when known.
    pub error: Option<String>,
}

/// A queue's election on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectionStatus {
    /// This node holds the lease.
    pub leader: bool,
    /// The lease's epoch.
    pub epoch: u64,
    /// Times this node took the lease over.
    pub takeovers: u64,
    /// Times this node fenced the queue.
    pub fences: u64,
    /// The last read of the lease succeeded.
    pub backend_up: bool,
}

/// What the daemon knows besides its metrics.
pub(crate) struct Inputs<'a> {
    pub node: &'a str,
    pub root: &'a Path,
    pub metrics: &'a Samples,
    pub ready: bool,
    pub readiness: Vec<String>,
    /// Why each (queue, replica) is down, from the replication health.
    pub replica_errors: &'a std::collections::BTreeMap<(String, String), String>,
    pub history: &'a History,
    pub now_unix_ms: u64,
}

fn count(v: Option<f64>) -> u64 {
    // Counters and gauges of whole records: non-negative and exact below 2^53.
    v.filter(|v| v.is_finite() && *v > 0.0)
        .map_or(0, |v| v as u64)
}

/// The role, epoch, epoch start and primary of the queue at `dir`, from its replication state.
pub(crate) fn queue_role(dir: &Path, node: &str) -> Option<(String, u64, u64, Option<String>)> {
    let state = repliq::replication::ReplicationState::load(dir).ok()?;
    let primary = state.role == repliq::replication::Role::Primary;
    let role = if primary { "primary" } else { "replica" };
    let who = state.primary.or_else(|| primary.then(|| node.to_owned()));
    Some((role.to_owned(), state.epoch, state.epoch_start, who))
}

/// Builds the status document from the metrics' samples and the queues' replication states.
pub(crate) fn build(inputs: &Inputs<'_>) -> Status {
    let m = inputs.metrics;
    let mut queues = Vec::new();
    for (labels, enqueued) in m.all("repliq_enqueued_records_total") {
        let Some(name) = labels.get("queue") else {
            continue;
        };
        let q = [("queue", name.as_str())];
        let role = queue_role(&inputs.root.join(name), inputs.node);
        let enqueued_records = count(Some(enqueued));
        let mut consumers: Vec<ConsumerStatus> = m
            .all("repliq_dequeued_records_total")
            .filter(|(l, _)| l.get("queue") == Some(name))
            .filter_map(|(l, v)| {
                let cursor = l.get("cursor")?;
                let dequeued_records = count(Some(v));
                Some(ConsumerStatus {
                    name: cursor.clone(),
                    dequeued_records,
                    dequeue_rate: inputs.history.rate(
                        &super::history::Key::dequeued(name, cursor),
                        dequeued_records,
                    ),
                    backlog_records: count(m.get(
                        "repliq_backlog_records",
                        &[("queue", name.as_str()), ("cursor", cursor.as_str())],
                    )),
                })
            })
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut replicas: Vec<ReplicaStatus> = m
            .all("repliq_replication_replica_up")
            .filter(|(l, _)| l.get("queue") == Some(name))
            .filter_map(|(l, up)| {
                let replica = l.get("replica")?;
                let r = [("queue", name.as_str()), ("replica", replica.as_str())];
                Some(ReplicaStatus {
                    name: replica.clone(),
                    up: up > 0.0,
                    lag_records: count(m.get("repliq_replication_lag_records", &r)),
                    lag_seconds: m
                        .get("repliq_replication_lag_seconds", &r)
                        .filter(|v| v.is_finite())
                        .unwrap_or(0.0),
                    replicated_records: count(m.get("repliq_replicated_records_total", &r)),
                    replicated_bytes: count(m.get("repliq_replicated_bytes_total", &r)),
                    lost: count(m.get("repliq_replication_replica_lost_total", &r)),
                    error: inputs
                        .replica_errors
                        .get(&(name.clone(), replica.clone()))
                        .cloned(),
                })
            })
            .collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        let replication = m
            .get("repliq_replication_required_acks", &q)
            .map(|required| ReplicationStatus {
                required_acks: count(Some(required)),
                replicas_up: count(m.get("repliq_replication_replicas_up", &q)),
                degraded: m.get("repliq_replication_degraded", &q).unwrap_or(0.0) > 0.0,
            });
        let election = m
            .get("repliq_election_leader", &q)
            .map(|leader| ElectionStatus {
                leader: leader > 0.0,
                epoch: count(m.get("repliq_election_epoch", &q)),
                takeovers: count(m.get("repliq_election_takeovers_total", &q)),
                fences: count(m.get("repliq_election_fences_total", &q)),
                backend_up: m.get("repliq_election_backend_up", &q).unwrap_or(0.0) > 0.0,
            });
        let (role, epoch, epoch_start, primary) = match role {
            Some((role, epoch, start, primary)) => (Some(role), Some(epoch), Some(start), primary),
            None => (
                None,
                m.get("repliq_queue_epoch", &q).map(|v| count(Some(v))),
                None,
                None,
            ),
        };
        queues.push(QueueStatus {
            name: name.clone(),
            role,
            epoch,
            epoch_start,
            primary,
            enqueued_records,
            enqueue_rate: inputs
                .history
                .rate(&super::history::Key::enqueued(name), enqueued_records),
            segments: count(m.get("repliq_segments", &q)),
            disk_bytes: count(m.get("repliq_disk_bytes", &q)),
            damaged: m.get("repliq_queue_damaged", &q).unwrap_or(0.0) > 0.0,
            consumers,
            replication,
            replicas,
            election,
        });
    }
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let volume = match (
        m.get("repliq_volume_size_bytes", &[]),
        m.get("repliq_volume_free_bytes", &[]),
    ) {
        (Some(size), Some(free)) => Some(Volume {
            size_bytes: count(Some(size)),
            free_bytes: count(Some(free)),
        }),
        _ => None,
    };
    Status {
        node: inputs.node.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        time_unix_ms: inputs.now_unix_ms,
        ready: inputs.ready,
        readiness: inputs.readiness.clone(),
        volume,
        queues,
        failovers: inputs.history.failovers(),
    }
}
