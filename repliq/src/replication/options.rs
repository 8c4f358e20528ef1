//! How the primary side replicates a queue: [`PrimaryOptions`] and the replicas' addresses.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{ReplicationMode, ReplicationObserver};

/// The default bound after which a replica is declared lost: 1024 segments (16 GiB with the
/// default segment size).
pub const DEFAULT_MAX_REPLICA_LAG_SEGMENTS: u64 = 1024;

/// How often both ends of a replication stream send an HTTP/2 PING when nothing else arrives.
/// With [`STREAM_KEEPALIVE_TIMEOUT`], a stream whose peer vanished without a FIN (a node or pod
/// gone, a partition, a stopped process) is closed within seconds instead of when the kernel
/// gives up on the connection (`tcp_retries2`: 15 minutes), and the primary reconnects, resolving
/// the replica's name again (a DaemonSet pod comes back at a new address).
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(1);

/// How long an unanswered keep-alive PING may wait before the stream is closed.
pub const STREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A replica of a queue: a node name and its gRPC address (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaAddr {
    /// The replica's node name.
    pub name: String,
    /// Its gRPC address.
    pub address: String,
    /// The name its certificate must be issued to under mutual TLS (`None`: `name`).
    pub identity: Option<String>,
}

/// How the primary side replicates one queue: [`PrimaryOptions::new`], then the builder methods
/// for what differs from the defaults.
///
/// ```
/// use std::time::Duration;
/// use repliq::ReplicationMode;
/// use repliq::replication::PrimaryOptions;
///
/// let options = PrimaryOptions::new("node-a", Vec::new(), ReplicationMode::Synchronous)
///     .required_acks(1)
///     .ack_timeout(Duration::from_millis(500));
/// assert_eq!(options.required_acks, 1);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PrimaryOptions {
    /// This node's name.
    pub node: String,
    /// The replicas.
    pub replicas: Vec<ReplicaAddr>,
    /// Synchronous or asynchronous.
    pub mode: ReplicationMode,
    /// Replicas that must hold a record before it is acknowledged (k of n).
    pub required_acks: usize,
    /// What a replica's acknowledgement means in synchronous mode: the record is in its journal
    /// ([`AckLevel::Replicated`]) or also synced to its disk ([`AckLevel::Durable`], the
    /// default).
    pub ack_level: AckLevel,
    /// Largest frame, in bytes.
    pub max_frame_bytes: usize,
    /// Records in flight per replica beyond its acknowledgement.
    pub window: u64,
    /// How long a stop waits for replicas to catch up.
    pub drain_timeout: Duration,
    /// How long a synchronous `enqueue` waits for the acknowledgements before it returns
    /// [`QueueError::Replication`](crate::QueueError::Replication).
    pub ack_timeout: Duration,
    /// Retention keeps the segments a replica lacks (a durable cursor per replica) until it is
    /// this many segments behind (beyond the one holding its last record); then it is declared
    /// lost and retention proceeds. `None`: never (a stopped replica may fill the disk).
    pub max_replica_lag_segments: Option<u64>,
    /// Told about acknowledgements, bytes sent and lag (the daemon's metrics), if set.
    pub observer: Option<Arc<dyn ReplicationObserver>>,
    /// Until when this node may acknowledge writes as the primary (a lease it holds), if the
    /// primary is elected; `None`: for as long as its state says it is the primary (manual
    /// promotion).
    pub authority: Option<Authority>,
    /// Mutual TLS to the replicas (feature `tls`): `None` streams in plain text.
    #[cfg(feature = "tls")]
    pub tls: Option<super::TlsFiles>,
}

/// What a replica's acknowledgement promises, and so what a synchronous `enqueue` that returned
/// `Ok` survives (docs/REPLICATION.md, "Acknowledgement levels").
///
/// | level | the replica acknowledges once the record is | survives |
/// |---|---|---|
/// | `Durable` (default) | in its journal and synced (`msync`) | the primary's loss plus a power loss of the replica |
/// | `Replicated` | in its journal (its page cache); synced within about 200 ms | the primary's loss plus a crash of the replica *process*; not a power loss or kernel crash of the replica within those 200 ms |
///
/// `Replicated` is what Kafka's `acks=all` gives without `flush.messages=1`; it saves the
/// replica's sync from every acknowledgement's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckLevel {
    /// The replica synced the record before it acknowledged it.
    #[default]
    Durable,
    /// The replica wrote the record into its journal (visible to its readers, in the page cache)
    /// before it acknowledged it, and syncs it within about 200 ms.
    Replicated,
}

/// Until when a primary may acknowledge writes: the validity of the lease that made it primary,
/// shared by the election (which extends it at each renewal) and the replication task (which
/// publishes acknowledgements only while it holds).
///
/// A primary paused past its lease (a long GC pause, a frozen VM, `SIGSTOP`) may resume with
/// acknowledgements of its replicas still in flight, from before they learned of the next
/// epoch: they are not published once the lease has run out, so no `enqueue` returns `Ok` for a
/// record the next primary may not hold. The monotonic clock keeps running while a process is
/// stopped, so a resumed process sees at once that its lease ran out.
#[derive(Debug, Clone, Default)]
pub struct Authority {
    /// Nanoseconds after [`origin`] until which acknowledgements may be published (0: none).
    until: Arc<AtomicU64>,
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Authority {
    /// An authority that holds nothing until [`grant_until`](Self::grant_until).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Acknowledgements may be published until `deadline`; `None` revokes.
    pub fn grant_until(&self, deadline: Option<Instant>) {
        let nanos = deadline.map_or(0, |d| {
            u64::try_from(d.saturating_duration_since(origin()).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1)
        });
        self.until.store(nanos, Ordering::Release);
    }

    /// Whether acknowledgements may be published now.
    #[must_use]
    pub fn holds(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && (origin().elapsed().as_nanos() as u64) < until
    }
}

impl PrimaryOptions {
    /// Options with defaults: 256 KiB frames, a window of 65 536 records, all replicas
    /// acknowledging in synchronous mode, a replica lost after
    /// [`DEFAULT_MAX_REPLICA_LAG_SEGMENTS`] segments.
    #[must_use]
    pub fn new(node: impl Into<String>, replicas: Vec<ReplicaAddr>, mode: ReplicationMode) -> Self {
        let required_acks = match mode {
            ReplicationMode::Synchronous => replicas.len(),
            ReplicationMode::Asynchronous => 0,
        };
        PrimaryOptions {
            node: node.into(),
            replicas,
            mode,
            required_acks,
            ack_level: AckLevel::Durable,
            max_frame_bytes: 256 << 10,
            window: 1 << 16,
            drain_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            max_replica_lag_segments: Some(DEFAULT_MAX_REPLICA_LAG_SEGMENTS),
            observer: None,
            authority: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Replicas that must hold a record before it is acknowledged (synchronous mode; k of n).
    #[must_use]
    pub fn required_acks(mut self, required_acks: usize) -> Self {
        self.required_acks = required_acks;
        self
    }

    /// What a replica's acknowledgement means in synchronous mode (see [`AckLevel`]).
    #[must_use]
    pub fn ack_level(mut self, level: AckLevel) -> Self {
        self.ack_level = level;
        self
    }

    /// Whether replicas may acknowledge records before they synced them: always for an
    /// asynchronous primary (nothing waits for its acknowledgements), and at
    /// [`AckLevel::Replicated`].
    #[must_use]
    pub fn replicas_sync_lazily(&self) -> bool {
        self.mode == ReplicationMode::Asynchronous || self.ack_level == AckLevel::Replicated
    }

    /// The largest frame, in bytes.
    #[must_use]
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Records in flight per replica beyond its acknowledgement.
    #[must_use]
    pub fn window(mut self, records: u64) -> Self {
        self.window = records;
        self
    }

    /// How long a stop waits for replicas to catch up.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a synchronous `enqueue` waits for its acknowledgements.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How many segments behind a replica may fall before it is declared lost (`None`: never).
    #[must_use]
    pub fn max_replica_lag_segments(mut self, segments: Option<u64>) -> Self {
        self.max_replica_lag_segments = segments;
        self
    }

    /// Who is told about acknowledgements, bytes sent and lag.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ReplicationObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The lease under which this primary may acknowledge writes (elected primaries).
    #[must_use]
    pub fn authority(mut self, authority: Authority) -> Self {
        self.authority = Some(authority);
        self
    }

    /// Mutual TLS to the replicas.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, files: super::TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }
}

impl ReplicaAddr {
    /// The replica named `name` at gRPC address `address` (`host:port`).
    #[must_use]
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        ReplicaAddr {
            name: name.into(),
            address: address.into(),
            identity: None,
        }
    }

    /// Under mutual TLS, the replica's certificate is issued to `identity` rather than to its
    /// node name (a DaemonSet pod's per-pod certificate, named after the pod).
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// The name the replica's certificate must be issued to.
    #[must_use]
    pub fn identity(&self) -> &str {
        self.identity.as_deref().unwrap_or(&self.name)
    }
}
