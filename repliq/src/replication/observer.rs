//! What the primary side tells an observer (the daemon's metrics) as it replicates.

use std::time::Duration;

/// Receives replication events of the primary side, for metrics. Every method has an empty
/// default, so an observer implements only what it records. Called from the replication task:
/// keep the methods cheap and non-blocking.
pub trait ReplicationObserver: Send + Sync + std::fmt::Debug {
    /// `replica` acknowledged `records` more records of `queue`.
    fn acked_records(&self, queue: &str, replica: &str, records: u64) {
        let _ = (queue, replica, records);
    }
    /// A frame of `queue` sent to `replica` was acknowledged `latency` after it was sent.
    fn ack_latency(&self, queue: &str, replica: &str, latency: Duration) {
        let _ = (queue, replica, latency);
    }
    /// `bytes` journal bytes of `queue` were sent to `replica`.
    fn sent_bytes(&self, queue: &str, replica: &str, bytes: u64) {
        let _ = (queue, replica, bytes);
    }
    /// `replica` lacks `records` committed records of `queue`; the oldest was sent `age` ago
    /// (zero when it holds everything).
    fn lag(&self, queue: &str, replica: &str, records: u64, age: Duration) {
        let _ = (queue, replica, records, age);
    }
    /// `replica` lacks about `bytes` journal bytes of `queue` (see [`Self::lag`]; 0 when it
    /// holds everything). Not called when the records cannot be read.
    fn lag_bytes(&self, queue: &str, replica: &str, bytes: u64) {
        let _ = (queue, replica, bytes);
    }
    /// `replica` of `queue` is (`up`) or is not streaming and acknowledging in time; `error` says
    /// why not when a connection attempt failed (unresolvable name, refused connection, a
    /// refusal by the replica). Called when this changes and periodically.
    fn replica_state(&self, queue: &str, replica: &str, up: bool, error: Option<&str>) {
        let _ = (queue, replica, up, error);
    }
    /// `up` of the replicas of `queue` stream and acknowledge in time; synchronous producers
    /// need `required` of them (0: asynchronous). Fewer up than required: every synchronous
    /// `enqueue` times out.
    fn quorum(&self, queue: &str, required: usize, up: usize) {
        let _ = (queue, required, up);
    }
    /// `replica` of `queue` was declared lost: it lacked `segments` segments beyond the one
    /// holding its last record (more than `PrimaryOptions::max_replica_lag_segments`) and
    /// `records` records; retention no longer keeps segments for it (it resyncs in full when it
    /// is back).
    fn replica_lost(&self, queue: &str, replica: &str, segments: u64, records: u64) {
        let _ = (queue, replica, segments, records);
    }
    /// `replica` of `queue` is resynced from the primary's oldest segment: it needed records
    /// retention had deleted. Called once per resync.
    fn resync(&self, queue: &str, replica: &str) {
        let _ = (queue, replica);
    }
    /// The oldest frame of `queue` in flight to `replica` was not acknowledged within the
    /// acknowledgement timeout (the replica is no longer up). Called once per occurrence.
    fn ack_timeout(&self, queue: &str, replica: &str) {
        let _ = (queue, replica);
    }
    /// `queue` is damaged on this node (e.g. a segment truncated while mapped): its new records
    /// are no longer replicated from here; `error` names the file. Called once per occurrence.
    fn damaged(&self, queue: &str, error: &str) {
        let _ = (queue, error);
    }
    /// Replication of `queue` from this node stopped (shutdown, step-down, error).
    fn stopped(&self, queue: &str) {
        let _ = queue;
    }
}
