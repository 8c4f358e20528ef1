//! What the driver needs of a coordination backend: read a queue's lease and candidates,
//! compare-and-swap the lease, advertise this node's position.

use async_trait::async_trait;

use super::machine::{Observation, Position, WriteOutcome};

/// A lease store (etcd, Kubernetes Leases).
#[async_trait]
pub trait LeaseBackend: Send + Sync + std::fmt::Debug + 'static {
    /// A short description for log lines (`etcd at [..]`).
    fn describe(&self) -> String;

    /// Reads the lease of `queue` and the candidates that advertised for it.
    ///
    /// # Errors
    ///
    /// A sentence naming what failed (unreachable, forbidden, ...).
    async fn observe(&self, queue: &str) -> Result<Observation, String>;

    /// Writes the lease of `queue` as held by `node` with `epoch` if its token is `expected`
    /// (empty: the lease must not exist yet).
    async fn write(&self, queue: &str, node: &str, epoch: u64, expected: &str) -> WriteOutcome;

    /// Publishes `node`'s position in `queue` (expires with `node` if it stops advertising).
    ///
    /// # Errors
    ///
    /// A sentence naming what failed.
    async fn advertise(&self, queue: &str, node: &str, position: Position) -> Result<(), String>;
}

/// The lease record's value (etcd) and candidate values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseRecord {
    /// The holder.
    pub holder: String,
    /// The epoch it holds.
    pub epoch: u64,
}
