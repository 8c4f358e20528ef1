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
}
