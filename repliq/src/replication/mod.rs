//! Replication: the committed bytes of a primary's journal, streamed unchanged to replicas that
//! append them at the same sequence numbers.
//!
//! This module is the *state machine* of replication and does no I/O (the habit of raft-rs):
//! `Leader` runs on the primary, one `Follower` per queue on each replica. Events go in
//! (a replica subscribed, the journal committed more records, an acknowledgement arrived, a frame
//! arrived) and decisions come out (`LeaderAction`s, `FollowerDecision`s). A transport (the
//! gRPC adapter) and a journal carry them out. That keeps every rule of the protocol testable
//! over a simulated network with drops, duplicates, reordering and partitions (see `test.rs`).
//!
//! # The protocol
//!
//! * Records are identified by a dense sequence number and carry a crc32c (`RecordId`).
//! * Every primary term has an **epoch**. Frames and subscriptions carry it. A follower refuses
//!   frames of an epoch older than the newest it has seen; a leader that meets a newer epoch
//!   steps down. This fences an old primary after a failover (no split brain).
//! * A replica subscribes with the next sequence it needs; the leader sends batches of
//!   consecutive committed records from there, at most `window` records beyond the replica's last
//!   acknowledgement.
//! * A follower appends idempotently: a record it already holds with the same checksum is
//!   skipped; a record after a gap is refused (the transport then resubscribes); a record that
//!   differs from what it holds is refused (corruption).
//! * Frames carry the first sequence of the sender's epoch (`epoch_start`, like Kafka's leader
//!   epoch). A follower that meets a newer epoch and holds records from `epoch_start` on holds a
//!   suffix the new primary never had (an old primary's unreplicated writes, possible only in
//!   asynchronous mode): that suffix is **moved aside**, not merged, and replaced by the new
//!   primary's records.
//! * A follower acknowledges the sequence up to which it holds records durably. The leader
//!   publishes the highest sequence that `required_acks` replicas hold (`LeaderAction::Acked`);
//!   in [`ReplicationMode::Synchronous`] `enqueue` waits for that value to pass its record.
//!
//! # What is public
//!
//! For applications: [`ReplicatedQueue`] (`configure_replication`), [`ReplicationMode`],
//! [`EmbeddedReplication`] and its [`PrimaryOptions`], [`ReplicaAddr`] and `TlsFiles` (feature
//! `tls`). The state machine, the gRPC adapter and the replication state file are public only so
//! that `repliqd` can drive them: they are hidden from these docs and semantic versioning does not
//! cover them.

#[cfg(test)]
mod competing_test;
#[cfg(feature = "replication")]
mod consumer_cursors;
#[cfg(feature = "replication")]
mod embedded;
mod follower;
#[cfg(feature = "replication")]
#[doc(hidden)]
pub mod grpc;
mod leader;
mod lineage;
#[cfg(all(test, feature = "replication"))]
mod node_test;
mod observer;
#[cfg(feature = "replication")]
mod options;
#[cfg(feature = "replication")]
mod peers;
#[cfg(feature = "replication")]
mod primary;
#[doc(hidden)]
pub mod producer_table;
mod queue_lease;
#[cfg(feature = "replication")]
mod replica_cursors;
#[cfg(feature = "replication")]
mod replica_service;
#[cfg(all(feature = "replication", feature = "fuzzing"))]
pub(crate) use replica_service::fuzz as replica_service_fuzz;
mod state;
#[cfg(test)]
mod test;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "replication")]
pub use embedded::{EmbeddedReplication, ReplicatedQueue};
#[cfg(feature = "replication")]
pub use options::{AckLevel, PrimaryOptions, ReplicaAddr};
#[cfg(feature = "tls")]
pub use tls::TlsFiles;

// What follows serves the daemon (`repliqd`) and the tests: the state machine, the gRPC adapter,
// the state file. It is public so that the daemon can drive it, hidden from the documentation,
// and not part of the API that semantic versioning covers.
#[doc(hidden)]
pub use follower::{Follower, FollowerDecision, HelloAccepted, Refusal, StreamId};
#[doc(hidden)]
pub use leader::{Leader, LeaderAction, LeaderConfig};
#[doc(hidden)]
pub use lineage::{EpochStart, Lineage};
#[doc(hidden)]
pub use observer::ReplicationObserver;
#[cfg(feature = "replication")]
#[doc(hidden)]
pub use options::{
    Authority, DEFAULT_MAX_REPLICA_LAG_SEGMENTS, STREAM_KEEPALIVE, STREAM_KEEPALIVE_TIMEOUT,
};
#[cfg(feature = "replication")]
#[doc(hidden)]
pub use peers::PeerSet;
#[cfg(feature = "replication")]
#[doc(hidden)]
pub use primary::run_primary;
#[doc(hidden)]
pub use queue_lease::{QueueLease, clear_lease};
#[cfg(feature = "replication")]
#[doc(hidden)]
pub use replica_service::ReplicaService;
#[doc(hidden)]
pub use state::{ReplicationState, Role, STATE_FILE};

/// When `enqueue` returns on a replicated queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReplicationMode {
    /// After the configured number of replicas acknowledged durable receipt of the message.
    Synchronous,
    /// After the local commit; replicas follow as fast as they can and their lag is tracked.
    #[default]
    Asynchronous,
}

/// The name of a node (its `NODE_NAME`).
#[doc(hidden)]
pub type NodeId = String;

#[doc(hidden)]
pub use crate::journal::replica::RecordId;
#[doc(hidden)]
pub use crate::journal::{NODE_POLICY_FILE, NodePolicy};

#[doc(hidden)]
/// The header of a frame: a batch of consecutive committed records of one epoch. The bytes of
/// the records travel beside it, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// The sender's epoch.
    pub epoch: u64,
    /// The first sequence number written in the sender's epoch: records a replica holds from
    /// here on under an older epoch never reached this primary.
    pub epoch_start: u64,
    /// The records, with consecutive sequence numbers.
    pub records: Vec<RecordId>,
}
