//! `repliqd`'s metrics, exposed at `/metrics` in the OpenMetrics text format.
//!
//! Queue metrics are read from the queues' files at scrape time (so they count every producer and
//! consumer process on the node, not only the daemon); replication metrics are kept by the
//! replication tasks as they run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
