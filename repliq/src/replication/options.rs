//! How the primary side replicates a queue: [`PrimaryOptions`] and the replicas' addresses.

use std::sync::Arc;
use std::time::Duration;

use super::{ReplicationMode, ReplicationObserver};

/// The default bound after which a replica is declared lost: 1024 segments (16 GiB with the
/// default segment size).
pub const DEFAULT_MAX_REPLICA_LAG_SEGMENTS: u64 = 1024;

/// A replica of a queue: a node name and its gRPC address (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAddr {
    /// The replica's node name.
    pub name: String,
    /// Its gRPC address.
    pub address: String,
}

/// How the primary side replicates one queue.
#[derive(Debug, Clone)]
pub struct PrimaryOptions {
    /// This node's name.
    pub node: String,
    /// The replicas.
    pub replicas: Vec<ReplicaAddr>,
    /// Synchronous or asynchronous.
    pub mode: ReplicationMode,
    /// Replicas that must hold a record before it is acknowledged (k of n).
    pub required_acks: usize,
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
            max_frame_bytes: 256 << 10,
            window: 1 << 16,
            drain_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            max_replica_lag_segments: Some(DEFAULT_MAX_REPLICA_LAG_SEGMENTS),
            observer: None,
        }
    }
}
