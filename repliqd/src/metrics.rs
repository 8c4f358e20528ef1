//! `repliqd`'s metrics, exposed at `/metrics` in the OpenMetrics text format.
//!
//! Queue metrics are read from the queues' files at scrape time (so they count every producer and
//! consumer process on the node, not only the daemon); replication metrics are kept by the
//! replication tasks as they run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a replication metric: the queue and the replica's node name.
pub type ReplicaLabels = Vec<(&'static str, String)>;

/// The labels of one (queue, replica) pair.
#[must_use]
pub fn replica_labels(queue: &str, replica: &str) -> ReplicaLabels {
    vec![("queue", queue.to_owned()), ("replica", replica.to_owned())]
}

/// Metrics the replication tasks update.
#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    /// Records sent to and acknowledged by a replica.
    pub replicated_records: Family<ReplicaLabels, Counter>,
    /// Bytes sent to and acknowledged by a replica.
    pub replicated_bytes: Family<ReplicaLabels, Counter>,
    /// Records the replica still lacks.
    pub lag_records: Family<ReplicaLabels, Gauge>,
    /// Age in seconds of the oldest record the replica still lacks (0 when caught up).
    pub lag_seconds: Family<ReplicaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Time from sending a frame to its acknowledgement.
    pub ack_latency_seconds: Family<ReplicaLabels, Histogram, fn() -> Histogram>,
    /// 1 while a replica streams and acknowledges in time, else 0.
    pub replica_up: Family<ReplicaLabels, Gauge>,
    /// Times a replica was declared lost (too far behind; retention stopped keeping its
    /// segments).
    pub replica_lost: Family<ReplicaLabels, Counter>,
    /// Replicas a synchronous `enqueue` of the queue needs (0: asynchronous).
    pub required_acks: Family<QueueLabels, Gauge>,
    /// Replicas of the queue that are up.
    pub replicas_up: Family<QueueLabels, Gauge>,
    /// 1 while fewer replicas are up than required: synchronous enqueues time out.
    pub degraded: Family<QueueLabels, Gauge>,
    /// What `/readyz` reports, per queue this node is primary of.
    pub health: Arc<Mutex<BTreeMap<String, QueueHealth>>>,
}

/// Labels of a per-queue metric.
pub type QueueLabels = Vec<(&'static str, String)>;

/// The replication health of one queue this node is primary of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueHealth {
    /// Acknowledgements a synchronous `enqueue` needs.
    pub required: usize,
    /// Replicas up.
    pub up: usize,
    /// Replicas that are not up, with the last connection error if any.
    pub down: BTreeMap<String, Option<String>>,
}

impl QueueHealth {
    /// Fewer replicas up than required.
    #[must_use]
    pub fn degraded(&self) -> bool {
        self.up < self.required
    }
}

impl ReplicationMetrics {
    /// One line per queue with a replica down, degraded queues first; `true` if any queue is
    /// degraded.
    #[must_use]
    pub fn health_report(&self) -> (bool, String) {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut degraded = false;
        let mut lines = Vec::new();
        for (queue, h) in health.iter() {
            if h.down.is_empty() && !h.degraded() {
                continue;
            }
            degraded |= h.degraded();
            let down: Vec<String> = h
                .down
                .iter()
                .map(|(r, e)| match e {
                    Some(e) => format!("{r} ({e})"),
                    None => format!("{r} (not acknowledging)"),
                })
                .collect();
            lines.push(format!(
                "{}queue {queue}: {} of {} required replicas up; down: {}",
                if h.degraded() { "degraded: " } else { "" },
                h.up,
                h.required,
                down.join(", ")
            ));
        }
        lines.sort_by_key(|l| !l.starts_with("degraded"));
        (degraded, lines.join("\n"))
    }

    fn with_health(&self, queue: &str, f: impl FnOnce(&mut QueueHealth)) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        f(health.entry(queue.to_owned()).or_default());
    }
}

fn queue_labels(queue: &str) -> QueueLabels {
    vec![("queue", queue.to_owned())]
}

impl repliq::replication::ReplicationObserver for ReplicationMetrics {
    fn acked_records(&self, queue: &str, replica: &str, records: u64) {
        self.replicated_records
            .get_or_create(&replica_labels(queue, replica))
            .inc_by(records);
    }
    fn ack_latency(&self, queue: &str, replica: &str, latency: std::time::Duration) {
        self.ack_latency_seconds
            .get_or_create(&replica_labels(queue, replica))
            .observe(latency.as_secs_f64());
    }
    fn sent_bytes(&self, queue: &str, replica: &str, bytes: u64) {
        self.replicated_bytes
            .get_or_create(&replica_labels(queue, replica))
            .inc_by(bytes);
    }
    fn lag(&self, queue: &str, replica: &str, records: u64, age: std::time::Duration) {
        let labels = replica_labels(queue, replica);
        self.lag_records
            .get_or_create(&labels)
            .set(i64::try_from(records).unwrap_or(i64::MAX));
        self.lag_seconds
            .get_or_create(&labels)
            .set(age.as_secs_f64());
    }
    fn replica_state(&self, queue: &str, replica: &str, up: bool, error: Option<&str>) {
        self.replica_up
            .get_or_create(&replica_labels(queue, replica))
            .set(i64::from(up));
        self.with_health(queue, |h| {
            if up {
                h.down.remove(replica);
            } else {
                h.down
                    .insert(replica.to_owned(), error.map(ToOwned::to_owned));
            }
        });
    }
    fn replica_lost(&self, queue: &str, replica: &str, _segments: u64, _records: u64) {
        self.replica_lost
            .get_or_create(&replica_labels(queue, replica))
            .inc();
    }
    fn quorum(&self, queue: &str, required: usize, up: usize) {
        let labels = queue_labels(queue);
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.required_acks.get_or_create(&labels).set(n(required));
        self.replicas_up.get_or_create(&labels).set(n(up));
        self.degraded
            .get_or_create(&labels)
            .set(i64::from(up < required));
        self.with_health(queue, |h| {
            h.required = required;
            h.up = up;
        });
    }
    fn stopped(&self, queue: &str) {
        let labels = queue_labels(queue);
        self.required_acks.remove(&labels);
        self.replicas_up.remove(&labels);
        self.degraded.remove(&labels);
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(queue);
    }
}

fn ack_latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for ReplicationMetrics {
    fn default() -> Self {
        ReplicationMetrics {
            replicated_records: Family::default(),
            replicated_bytes: Family::default(),
            lag_records: Family::default(),
            lag_seconds: Family::default(),
            ack_latency_seconds: Family::new_with_constructor(ack_latency_histogram),
            replica_up: Family::default(),
            replica_lost: Family::default(),
            required_acks: Family::default(),
            replicas_up: Family::default(),
            degraded: Family::default(),
            health: Arc::default(),
        }
    }
}

/// All of `repliqd`'s metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Updated by the replication tasks.
    pub replication: ReplicationMetrics,
}

impl Metrics {
    /// Metrics for the queues under `root`.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        let mut registry = Registry::with_prefix("repliq");
        let replication = ReplicationMetrics::default();
        registry.register(
            "replicated_records",
            "Records acknowledged by a replica",
            replication.replicated_records.clone(),
        );
        registry.register(
            "replicated_bytes",
            "Journal bytes acknowledged by a replica",
            replication.replicated_bytes.clone(),
        );
        registry.register(
            "replication_lag_records",
            "Committed records a replica does not hold yet",
            replication.lag_records.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest record a replica does not hold yet",
            replication.lag_seconds.clone(),
        );
        registry.register(
            "replication_ack_latency_seconds",
            "Time from sending a frame to the replica's acknowledgement",
            replication.ack_latency_seconds.clone(),
        );
        registry.register(
            "replication_replica_up",
            "1 while a replica streams and acknowledges within the acknowledgement timeout",
            replication.replica_up.clone(),
        );
        registry.register(
            "replication_replica_lost",
            "Times a replica was declared lost: more than replication.max_replica_lag_segments \
             segments behind, so retention stopped keeping its segments (it resyncs in full)",
            replication.replica_lost.clone(),
        );
        registry.register(
            "replication_required_acks",
            "Replica acknowledgements a synchronous enqueue needs (0: asynchronous)",
            replication.required_acks.clone(),
        );
        registry.register(
            "replication_replicas_up",
            "Replicas of the queue that stream and acknowledge in time",
            replication.replicas_up.clone(),
        );
        registry.register(
            "replication_degraded",
            "1 while fewer replicas are up than required: synchronous enqueues time out",
            replication.degraded.clone(),
        );
        registry.register_collector(Box::new(QueueCollector {
            root: Arc::new(root),
        }));
        Metrics {
            registry,
            replication,
        }
    }

    /// The OpenMetrics text of every metric.
    ///
    /// # Errors
    ///
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads every queue under the root on each scrape.
#[derive(Debug)]
struct QueueCollector {
    root: Arc<PathBuf>,
}

/// One queue's numbers, read from its files.
struct QueueSample {
    queue: String,
    enqueued: u64,
    segments: u64,
    disk_bytes: u64,
    cursors: Vec<(String, u64, u64)>,
}

fn sample_queues(root: &Path) -> Vec<QueueSample> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(info) = repliq::inspect(&dir) else {
            continue;
        };
        let disk_bytes = std::fs::read_dir(&dir)
            .map(|files| {
                files
                    .flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        out.push(QueueSample {
            queue: entry.file_name().to_string_lossy().into_owned(),
            enqueued: info.last_seq.map_or(0, |s| s + 1),
            segments: info.segments.len() as u64,
            disk_bytes,
            cursors: info
                .cursors
                .iter()
                .map(|c| (c.name.clone(), c.next_seq, c.backlog))
                .collect(),
        });
    }
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    out
}

/// Encodes one metric family: its descriptor, then one sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for QueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let samples = sample_queues(&self.root);
        let q = |s: &QueueSample| vec![("queue", s.queue.clone())];
        let cursors = || {
            samples.iter().flat_map(|s| {
                s.cursors.iter().map(|(name, next, backlog)| {
                    let labels = vec![("queue", s.queue.clone()), ("cursor", name.clone())];
                    (labels, *next, *backlog)
                })
            })
        };
        family(
            &mut encoder,
            "enqueued_records",
            "Records committed to the queue since it was created",
            MetricType::Counter,
            samples
                .iter()
                .map(|s| (q(s), ConstCounter::new(s.enqueued))),
        )?;
        family(
            &mut encoder,
            "dequeued_records",
            "Records consumed through a named cursor",
            MetricType::Counter,
            cursors().map(|(l, next, _)| (l, ConstCounter::new(next))),
        )?;
        family(
            &mut encoder,
            "backlog_records",
            "Records written but not yet consumed by a cursor",
            MetricType::Gauge,
            cursors().map(|(l, _, backlog)| (l, ConstGauge::new(backlog as i64))),
        )?;
        family(
            &mut encoder,
            "segments",
            "Segment files of the queue",
            MetricType::Gauge,
            samples
                .iter()
                .map(|s| (q(s), ConstGauge::new(s.segments as i64))),
        )?;
        family(
            &mut encoder,
            "disk_bytes",
            "Bytes of the queue's files on disk (allocated size of pre-allocated segments)",
            MetricType::Gauge,
            samples
                .iter()
                .map(|s| (q(s), ConstGauge::new(s.disk_bytes as i64))),
        )
    }
}
