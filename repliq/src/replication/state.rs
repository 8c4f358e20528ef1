//! A queue's replication role, stored beside its journal in `replication.json`.
//!
//! ```json
//! {"role": "replica", "epoch": 3, "epoch_start": 1200, "primary": "node-a"}
//! ```
//!
//! A queue without the file has never been replicated: it is the primary of epoch 1, which began
//! at sequence 0. The file is replaced atomically (write, fsync, rename). The epoch is mirrored
//! into the meta file's epoch word for `repliq inspect`.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::{QueueError, Result};

/// The state file's name inside a queue directory.
pub const STATE_FILE: &str = "replication.json";

/// Whether this node writes the queue or follows another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Producers on this node write the queue; it is streamed to replicas.
    Primary,
    /// The queue is a read-only copy of another node's.
    Replica,
}

/// The replication state of one queue on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationState {
    /// This node's role for the queue.
    pub role: Role,
    /// The newest epoch (primary term) this node has seen.
    pub epoch: u64,
    /// The first sequence number of that epoch.
    pub epoch_start: u64,
    /// The primary's node name, when known.
    #[serde(default)]
    pub primary: Option<String>,
    /// Set by a primary that replicates synchronously: producers then wait up to
    /// `ack_timeout_ms` for the replicas' acknowledgement of each message.
    #[serde(default)]
    pub synchronous: bool,
    /// How long a synchronous `enqueue` waits for acknowledgements.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}

impl Default for ReplicationState {
    fn default() -> Self {
        ReplicationState {
            role: Role::Primary,
            epoch: 1,
            epoch_start: 0,
            primary: None,
            synchronous: false,
            ack_timeout_ms: default_ack_timeout_ms(),
        }
    }
}

impl ReplicationState {
    /// Reads the state of the queue in `dir` (the default if the file does not exist).
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] or [`QueueError::Corrupt`] if the file cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<ReplicationState> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| QueueError::Corrupt {
                path,
                offset: e.column() as u64,
                reason: format!("invalid replication state: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReplicationState::default()),
            Err(e) => Err(QueueError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces the state file atomically.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if it cannot be written.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let io = |e| QueueError::io(format!("writing {}", path.display()), e);
        let json = serde_json::to_vec_pretty(self).map_err(|e| QueueError::Other(e.to_string()))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&json).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// `Ok` if local producers may write the queue in `dir` (it is not a replica).
    ///
    /// # Errors
    ///
    /// [`QueueError::Replication`] naming the primary if it is a replica.
    pub fn check_writable(&self, dir: &Path) -> Result<()> {
        match self.role {
            Role::Primary => Ok(()),
            Role::Replica => Err(QueueError::Replication(format!(
                "{} is a read-only replica of {} (epoch {}): write to the primary, or promote                  this replica with `repliq promote`",
                dir.display(),
                self.primary.as_deref().unwrap_or("another node"),
                self.epoch
            ))),
        }
    }

    /// How long producers wait for acknowledgements, if the queue replicates synchronously.
    #[must_use]
    pub fn ack_timeout(&self) -> Option<std::time::Duration> {
        (self.role == Role::Primary && self.synchronous)
            .then(|| std::time::Duration::from_millis(self.ack_timeout_ms))
    }

    /// Makes the replica in `dir` the primary of a new epoch, which begins at the next sequence
    /// number after what it holds. Producers may write it from now on; a `repliqd` running on
    /// this node starts streaming it to its peers, and the old primary, when it comes back,
    /// becomes a replica and moves aside anything it wrote that this replica never received.
    ///
    /// # Errors
    ///
    /// [`QueueError::Replication`] if the queue is already a primary; I/O and corruption errors.
    pub fn promote(dir: &Path) -> Result<ReplicationState> {
        let current = ReplicationState::load(dir)?;
        if current.role == Role::Primary {
            return Err(QueueError::Replication(format!(
                "{} is already the primary of epoch {}",
                dir.display(),
                current.epoch
            )));
        }
        let journal = Journal::open(dir, false)?;
        let next = crate::journal::replica::ByteSink::open(journal.clone())?.next_seq();
        let state = ReplicationState {
            role: Role::Primary,
            epoch: current.epoch + 1,
            epoch_start: next,
            primary: None,
            ..ReplicationState::default()
        };
        state.store(dir)?;
        state.mirror(&journal);
        Ok(state)
    }

    pub(crate) fn mirror(&self, journal: &Journal) {
        journal.epoch_word().store(self.epoch, Ordering::Release);
    }
}
