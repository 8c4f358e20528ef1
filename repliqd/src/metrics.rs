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
    /// Journal bytes the replica still lacks (0 when caught up).
    pub lag_bytes: Family<ReplicaLabels, Gauge>,
    /// Age in seconds of the oldest record the replica still lacks (0 when caught up).
    pub lag_seconds: Family<ReplicaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Time from sending a frame to its acknowledgement.
    pub ack_latency_seconds: Family<ReplicaLabels, Histogram, fn() -> Histogram>,
    /// 1 while a replica streams and acknowledges in time, else 0.
    pub replica_up: Family<ReplicaLabels, Gauge>,
    /// Times a replica was declared lost (too far behind; retention stopped keeping its
    /// segments).
    pub replica_lost: Family<ReplicaLabels, Counter>,
    /// Times a replica was resynced from the primary's oldest segment (it needed records
    /// retention had deleted).
    pub resyncs: Family<ReplicaLabels, Counter>,
    /// Times a replica's oldest unacknowledged frame outlived the acknowledgement timeout.
    pub ack_timeouts: Family<ReplicaLabels, Counter>,
    /// Replicas a synchronous `enqueue` of the queue needs (0: asynchronous).
    pub required_acks: Family<QueueLabels, Gauge>,
    /// Replicas of the queue that are up.
    pub replicas_up: Family<QueueLabels, Gauge>,
    /// 1 while fewer replicas are up than required: synchronous enqueues time out.
    pub degraded: Family<QueueLabels, Gauge>,
    /// What `/readyz` reports, per queue this node is primary of.
    pub health: Arc<Mutex<BTreeMap<String, QueueHealth>>>,
    /// 1 for a queue found damaged on this node (a file truncated while mapped): its new records
    /// are not replicated from here until it is repaired and the daemon restarted.
    pub damaged: Family<QueueLabels, Gauge>,
    /// Why each damaged queue is, for `/readyz`.
    pub damaged_reasons: Arc<Mutex<BTreeMap<String, String>>>,
    /// The last report of each (queue, replica) pair, for the node's events
    /// ([`crate::node_events`]); a queue's pairs go when its replication stops here.
    pub replicas: Arc<Mutex<BTreeMap<(String, String), ReplicaView>>>,
}

/// What the replication task last reported about one replica of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// Streaming and acknowledging in time.
    pub up: bool,
    /// Why not, when a connection attempt failed.
    pub error: Option<String>,
    /// Committed records the replica does not hold yet.
    pub lag_records: u64,
    /// Journal bytes the replica does not hold yet (`None`: not known yet).
    pub lag_bytes: Option<u64>,
    /// Times it was declared lost (so far behind that retention stopped keeping its segments).
    pub left_behind: u64,
    /// Times it was resynced from the oldest segment.
    pub resyncs: u64,
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
        for (queue, why) in self
            .damaged_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            lines.push(format!("damaged: queue {queue}: {why}"));
        }
        lines.sort_by_key(|l| !l.starts_with("degraded"));
        (degraded, lines.join("\n"))
    }

    /// A copy of every replica's last report.
    #[must_use]
    pub fn replica_views(&self) -> BTreeMap<(String, String), ReplicaView> {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn with_replica(&self, queue: &str, replica: &str, f: impl FnOnce(&mut ReplicaView)) {
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        f(replicas
            .entry((queue.to_owned(), replica.to_owned()))
            .or_default());
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
        self.with_replica(queue, replica, |v| v.lag_records = records);
    }
    fn lag_bytes(&self, queue: &str, replica: &str, bytes: u64) {
        self.lag_bytes
            .get_or_create(&replica_labels(queue, replica))
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.with_replica(queue, replica, |v| v.lag_bytes = Some(bytes));
    }
    fn replica_state(&self, queue: &str, replica: &str, up: bool, error: Option<&str>) {
        let labels = replica_labels(queue, replica);
        self.replica_up.get_or_create(&labels).set(i64::from(up));
        self.with_replica(queue, replica, |v| {
            v.up = up;
            v.error = error.map(ToOwned::to_owned);
        });
        // The event counters exist (at 0) from the first report, so `increase()` sees the first.
        drop(self.replica_lost.get_or_create(&labels));
        drop(self.resyncs.get_or_create(&labels));
        drop(self.ack_timeouts.get_or_create(&labels));
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
        self.with_replica(queue, replica, |v| v.left_behind += 1);
    }
    fn resync(&self, queue: &str, replica: &str) {
        self.resyncs
            .get_or_create(&replica_labels(queue, replica))
            .inc();
        self.with_replica(queue, replica, |v| v.resyncs += 1);
    }
    fn ack_timeout(&self, queue: &str, replica: &str) {
        self.ack_timeouts
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
    fn damaged(&self, queue: &str, error: &str) {
        self.damaged.get_or_create(&queue_labels(queue)).set(1);
        self.damaged_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned(), error.to_owned());
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
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(q, _), _| q != queue);
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
            lag_bytes: Family::default(),
            lag_seconds: Family::default(),
            ack_latency_seconds: Family::new_with_constructor(ack_latency_histogram),
            replica_up: Family::default(),
            replica_lost: Family::default(),
            resyncs: Family::default(),
            ack_timeouts: Family::default(),
            required_acks: Family::default(),
            replicas_up: Family::default(),
            degraded: Family::default(),
            health: Arc::default(),
            damaged: Family::default(),
            damaged_reasons: Arc::default(),
            replicas: Arc::default(),
        }
    }
}

/// What the election driver reports, per queue (see [`crate::election`]).
#[derive(Debug, Clone, Default)]
pub struct ElectionMetrics {
    /// 1 while this node holds the queue's lease.
    pub leader: Family<QueueLabels, Gauge>,
    /// The epoch of the lease this node holds, else the queue's local epoch.
    pub epoch: Family<QueueLabels, Gauge>,
    /// Lease renewals written by this node.
    pub renewals: Family<QueueLabels, Counter>,
    /// Lease writes that failed (`reason`: `conflict`, another node wrote first; `unreachable`,
    /// the backend did not answer or refused).
    pub failures: Family<QueueLabels, Counter>,
    /// Times this node acquired the queue's lease and was promoted to primary.
    pub takeovers: Family<QueueLabels, Counter>,
    /// Times this node fenced the queue (lost, expired or never held the lease while primary).
    pub fences: Family<QueueLabels, Counter>,
    /// 1 while the last read of the lease succeeded.
    pub backend_up: Family<QueueLabels, Gauge>,
}

impl ElectionMetrics {
    /// The labels of `queue`.
    #[must_use]
    pub fn queue(queue: &str) -> QueueLabels {
        queue_labels(queue)
    }

    /// The labels of a failed lease write of `queue`.
    #[must_use]
    pub fn failure(queue: &str, reason: &str) -> QueueLabels {
        vec![("queue", queue.to_owned()), ("reason", reason.to_owned())]
    }
}

/// All of `repliqd`'s metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Updated by the replication tasks.
    pub replication: ReplicationMetrics,
    /// Updated by the election driver.
    pub election: ElectionMetrics,
    /// The TLS files' expiry, updated when they (re)load (`crate::tls`).
    pub tls: TlsMetrics,
    /// Updated by the connectors' supervisors (issue 23).
    pub connectors: ConnectorMetrics,
    /// Updated by the client service's consumers (issue 21).
    pub clients: ClientMetrics,
}

impl Metrics {
    /// Metrics for the queues under `root` and the daemon whose tasks `health` follows.
    #[must_use]
    pub fn new(root: PathBuf, health: Arc<crate::supervise::Health>) -> Self {
        let mut root_registry = Registry::default();
        root_registry.register_collector(Box::new(ProcessCollector));
        let registry = root_registry.sub_registry_with_prefix("repliq");
        let replication = ReplicationMetrics::default();
        let election = ElectionMetrics::default();
        registry.register(
            "replicated_records",
            "Records acknowledged by a replica",
            replication.replicated_records.clone(),
        );
        registry.register(
            "replicated_bytes",
            "Journal bytes sent to a replica",
            replication.replicated_bytes.clone(),
        );
        registry.register(
            "replication_lag_records",
            "Committed records a replica does not hold yet",
            replication.lag_records.clone(),
        );
        registry.register(
            "replication_lag_bytes",
            "Journal bytes a replica does not hold yet (exact within a segment, else within a segment's overhead)",
            replication.lag_bytes.clone(),
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
            "replication_resyncs",
            "Times a replica was resynced from the oldest segment (it needed records retention deleted)",
            replication.resyncs.clone(),
        );
        registry.register(
            "replication_ack_timeouts",
            "Times a replica's oldest unacknowledged frame outlived the acknowledgement timeout",
            replication.ack_timeouts.clone(),
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
        registry.register(
            "queue_damaged",
            "1 for a queue found damaged on this node (a file truncated while mapped): not replicated from here until repaired",
            replication.damaged.clone(),
        );
        registry.register(
            "election_leader",
            "1 while this node holds the queue's lease (automatic failover)",
            election.leader.clone(),
        );
        registry.register(
            "election_epoch",
            "Epoch of the lease this node holds, else the queue's local epoch",
            election.epoch.clone(),
        );
        registry.register(
            "election_lease_renewals",
            "Lease renewals written by this node",
            election.renewals.clone(),
        );
        registry.register(
            "election_lease_failures",
            "Lease writes of this node that failed (reason: conflict or unreachable)",
            election.failures.clone(),
        );
        registry.register(
            "election_takeovers",
            "Times this node acquired the queue's lease and became its primary",
            election.takeovers.clone(),
        );
        registry.register(
            "election_fences",
            "Times this node fenced the queue (lease lost, expired or never held while primary)",
            election.fences.clone(),
        );
        registry.register(
            "election_backend_up",
            "1 while the last read of the queue's lease from the backend succeeded",
            election.backend_up.clone(),
        );
        // TLS (issue 20): set by crate::tls when the files load.
        let tls = TlsMetrics::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the first certificate of a TLS file (file: cert or ca) expires",
            tls.expiry.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Times the TLS files changed but did not load (the previous ones stay in use)",
            tls.reload_failures.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes refused or timed out (port: gRPC or HTTP; outcome: refused or timeout)",
            tls.handshake_failures.clone(),
        );
        let connectors = ConnectorMetrics::default();
        connectors.register(registry);
        let clients = ClientMetrics::default();
        clients.register(registry);
        registry.register_collector(Box::new(QueueCollector {
            root: Arc::new(root),
        }));
        registry.register_collector(Box::new(DaemonCollector {
            health,
            replication: replication.clone(),
        }));
        Metrics {
            registry: root_registry,
            replication,
            election,
            tls,
            connectors,
            clients,
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

// ---- Connector metrics (issue 23): filled by repliqd/src/connectors.rs. ----

/// Labels of a connector metric: its name, its kind (`redis_sink`, ...) and its queue.
pub type ConnectorLabels = Vec<(&'static str, String)>;

/// The counters of the `connectors:`, updated by their supervisors from each connector's
/// `repliq_connect::Stats` (monotonic across the connector's restarts).
#[derive(Debug, Clone, Default)]
pub struct ConnectorMetrics {
    /// Messages delivered (sink: confirmed by the remote; source: enqueued).
    pub forwarded: Family<ConnectorLabels, Counter>,
    /// Resends the remote refused by their dedup key.
    pub duplicates: Family<ConnectorLabels, Counter>,
    /// Transient failures retried.
    pub retries: Family<ConnectorLabels, Counter>,
    /// Messages written to the dead-letter queue.
    pub dead_letters: Family<ConnectorLabels, Counter>,
    /// Times the connector stopped with an error and was started again.
    pub restarts: Family<ConnectorLabels, Counter>,
    /// Sink: records after its cursor.
    pub lag_records: Family<ConnectorLabels, Gauge>,
    /// 1 while the connector runs.
    pub up: Family<ConnectorLabels, Gauge>,
}

impl ConnectorMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connector_forwarded",
            "Messages a connector delivered (sink: confirmed by the remote; source: enqueued)",
            self.forwarded.clone(),
        );
        registry.register(
            "connector_duplicates",
            "Resends the remote refused by their dedup key",
            self.duplicates.clone(),
        );
        registry.register(
            "connector_retries",
            "Transient failures a connector retried",
            self.retries.clone(),
        );
        registry.register(
            "connector_dead_letters",
            "Messages a connector wrote to its dead-letter queue",
            self.dead_letters.clone(),
        );
        registry.register(
            "connector_restarts",
            "Times a connector stopped with an error and was started again",
            self.restarts.clone(),
        );
        registry.register(
            "connector_lag_records",
            "Records in a sink's queue after its cursor",
            self.lag_records.clone(),
        );
        registry.register("connector_up", "1 while a connector runs", self.up.clone());
    }
}

// ---- End of connector metrics. ----

// ---- Client metrics (issue 21): filled by repliqd/src/client_service/consume.rs. ----

/// Labels of a remote consumer's metric: its queue and its name.
pub type ClientLabels = Vec<(&'static str, String)>;

/// The counters of the remote pull consumers (`repliq.client.v1`).
#[derive(Debug, Clone, Default)]
pub struct ClientMetrics {
    /// Records delivered again (a negative acknowledgement, `ack_wait`, a stream that ended).
    pub redeliveries: Family<ClientLabels, Counter>,
    /// Records written to the consumer's dead-letter queue after `max_deliver` deliveries.
    pub dead_letters: Family<ClientLabels, Counter>,
    /// Streams refused by `server.clients.rules`, by identity and missing right.
    pub denied: Family<ClientLabels, Counter>,
}

impl ClientMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "client_redeliveries",
            "Records a remote consumer was delivered again (negative acknowledgement, ack_wait, stream ended)",
            self.redeliveries.clone(),
        );
        registry.register(
            "client_dead_letters",
            "Records of a remote consumer written to its dead-letter queue after max_deliver deliveries",
            self.dead_letters.clone(),
        );
        registry.register(
            "client_denied",
            "Client streams refused by server.clients.rules, by certificate identity and missing right (read, write)",
            self.denied.clone(),
        );
    }

    /// Counts a stream of `identity` refused for lack of `right`.
    pub fn denied(&self, identity: &str, right: &str) {
        self.denied
            .get_or_create(&vec![
                ("identity", identity.to_owned()),
                ("right", right.to_owned()),
            ])
            .inc();
    }

    /// Counts `redelivered` and `dead_lettered` records of consumer `consumer` of `queue`.
    pub fn count(&self, queue: &str, consumer: &str, redelivered: u64, dead_lettered: u64) {
        if redelivered == 0 && dead_lettered == 0 {
            return;
        }
        let labels = vec![
            ("queue", queue.to_owned()),
            ("consumer", consumer.to_owned()),
        ];
        if redelivered > 0 {
            self.redeliveries.get_or_create(&labels).inc_by(redelivered);
        }
        if dead_lettered > 0 {
            self.dead_letters
                .get_or_create(&labels)
                .inc_by(dead_lettered);
        }
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics text, for scrapers and tools that do not
/// read OpenMetrics (`promtool check metrics`): counter families are named with their `_total`
/// suffix, `# UNIT` and `# EOF` lines go.
#[must_use]
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The `Content-Type` of [`to_prometheus_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    /// `Some((primary here, epoch))` when the replication state can be read.
    role: Option<(bool, u64)>,
    /// Unreplicated suffixes moved aside (directories under `moved-aside/`) and their bytes.
    moved_aside: (u64, u64),
}

/// The suffixes a replica moved aside under `<queue>/moved-aside/` (one directory each, see
/// `docs/FORMAT.md`) and the bytes of their files.
fn moved_aside(dir: &Path) -> (u64, u64) {
    let Ok(moves) = std::fs::read_dir(dir.join("moved-aside")) else {
        return (0, 0);
    };
    let mut count = 0;
    let mut bytes = 0;
    for m in moves.flatten() {
        if !m.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        count += 1;
        bytes += std::fs::read_dir(m.path()).map_or(0, |files| {
            files
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum::<u64>()
        });
    }
    (count, bytes)
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
            moved_aside: moved_aside(&dir),
            role: repliq::replication::ReplicationState::load(&dir)
                .ok()
                .map(|st| (st.role == repliq::replication::Role::Primary, st.epoch)),
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
        )?;
        family(
            &mut encoder,
            "moved_aside_suffixes",
            "Unreplicated suffixes a replica moved aside (under moved-aside/) after a failover",
            MetricType::Gauge,
            samples
                .iter()
                .map(|s| (q(s), ConstGauge::new(s.moved_aside.0 as i64))),
        )?;
        family(
            &mut encoder,
            "moved_aside_bytes",
            "Bytes of the files kept under moved-aside/ for an operator (the segments set aside and a copy of the queue's meta file and schema)",
            MetricType::Gauge,
            samples
                .iter()
                .map(|s| (q(s), ConstGauge::new(s.moved_aside.1 as i64))),
        )?;
        family(
            &mut encoder,
            "queue_primary",
            "1 while this node holds the primary role of the queue (it accepts enqueues)",
            MetricType::Gauge,
            samples.iter().filter_map(|s| {
                let (primary, _) = s.role?;
                Some((q(s), ConstGauge::new(i64::from(primary))))
            }),
        )?;
        family(
            &mut encoder,
            "queue_epoch",
            "Replication epoch of the queue on this node (it grows at every failover)",
            MetricType::Gauge,
            samples.iter().filter_map(|s| {
                let (_, epoch) = s.role?;
                Some((
                    q(s),
                    ConstGauge::new(i64::try_from(epoch).unwrap_or(i64::MAX)),
                ))
            }),
        )?;
        if let Ok(fs) = rustix::fs::statvfs(self.root.as_path()) {
            let size = fs.f_blocks.saturating_mul(fs.f_frsize);
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            family(
                &mut encoder,
                "volume_size_bytes",
                "Size of the file system holding the persistence path",
                MetricType::Gauge,
                [(Vec::new(), ConstGauge::new(clamp(size)))],
            )?;
            family(
                &mut encoder,
                "volume_free_bytes",
                "Bytes of the file system holding the persistence path that queues may still use",
                MetricType::Gauge,
                [(Vec::new(), ConstGauge::new(clamp(free)))],
            )?;
        }
        Ok(())
    }
}

/// The daemon's own state: its tasks, readiness and version.
#[derive(Debug)]
struct DaemonCollector {
    health: Arc<crate::supervise::Health>,
    replication: ReplicationMetrics,
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        family(
            &mut encoder,
            "daemon_task_up",
            "1 while a long-running task of the daemon runs; one that stops takes the daemon down",
            MetricType::Gauge,
            self.health.task_states().into_iter().map(|(task, up)| {
                (
                    vec![("task", task.to_owned())],
                    ConstGauge::new(i64::from(up)),
                )
            }),
        )?;
        let ready =
            self.health.not_ready_reasons().is_empty() && !self.replication.health_report().0;
        family(
            &mut encoder,
            "daemon_ready",
            "1 while /readyz answers 200",
            MetricType::Gauge,
            [(Vec::new(), ConstGauge::new(i64::from(ready)))],
        )?;
        family(
            &mut encoder,
            "build_info",
            "Always 1; the version label is the daemon's version",
            MetricType::Gauge,
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                ConstGauge::new(1),
            )],
        )
    }
}

/// The standard `process_*` metrics of the daemon's process, read from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` says about this process.
struct ProcessSample {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: u64,
    resident_bytes: u64,
    threads: u64,
    open_fds: u64,
    max_fds: Option<u64>,
}

fn process_sample() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields follow the last `)`.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // Field n of proc(5) is fields[n - 3] here.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        });
    Some(ProcessSample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page),
        threads: field(20)?,
        open_fds,
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(p) = process_sample() else {
            return Ok(());
        };
        let gauge = |v: u64| {
            [(
                Vec::new(),
                ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)),
            )]
        };
        family(
            &mut encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            MetricType::Counter,
            [(Vec::new(), ConstCounter::new(p.cpu_seconds))],
        )?;
        family(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            MetricType::Gauge,
            [(Vec::new(), ConstGauge::new(p.start_time_seconds))],
        )?;
        family(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            MetricType::Gauge,
            gauge(p.virtual_bytes),
        )?;
        family(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            MetricType::Gauge,
            gauge(p.resident_bytes),
        )?;
        family(
            &mut encoder,
            "process_threads",
            "Number of OS threads in the process",
            MetricType::Gauge,
            gauge(p.threads),
        )?;
        family(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            MetricType::Gauge,
            gauge(p.open_fds),
        )?;
        if let Some(max) = p.max_fds {
            family(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                MetricType::Gauge,
                gauge(max),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_text_format_names_counters_with_total_and_drops_openmetrics_lines() {
        let metrics = Metrics::new(
            std::env::temp_dir().join("repliq-no-such-root"),
            Arc::default(),
        );
        metrics
            .replication
            .replicated_records
            .get_or_create(&replica_labels("q", "b"))
            .inc_by(3);
        let open = metrics.encode().unwrap();
        assert!(
            open.contains("# TYPE repliq_replicated_records counter\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        let text = to_prometheus_text(&open);
        assert!(text.contains("# HELP repliq_replicated_records_total Records acknowledged"));
        assert!(text.contains("# TYPE repliq_replicated_records_total counter\n"));
        assert!(text.contains("repliq_replicated_records_total{queue=\"q\",replica=\"b\"} 3\n"));
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        // Every family has help text.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{text}");
    }
}

/// Labels of a certificate file's metric: `file` (`cert` or `ca`) and its `path`.
pub type TlsFileLabels = Vec<(&'static str, String)>;

/// Metrics of the certificate files, registered by [`Metrics`] and set by `crate::tls` when the files load.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// Unix time at which the file's first certificate to expire stops being valid
    /// (`repliq_tls_certificate_expiry_timestamp_seconds`).
    pub expiry: Family<TlsFileLabels, Gauge>,
    /// Times the files changed but did not load, so the previous ones were kept
    /// (`repliq_tls_reload_failures_total`).
    pub reload_failures: Counter,
    /// TLS handshakes refused or timed out, by `port` (`gRPC`, `HTTP`) and `outcome`
    /// (`refused`, `timeout`) (`repliq_tls_handshake_failures_total`): peers without a
    /// certificate of the CA, plain-text clients, scanners.
    pub handshake_failures: Family<TlsFileLabels, Counter>,
}
