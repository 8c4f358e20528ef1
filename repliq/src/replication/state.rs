//! A queue's replication role, stored beside its journal in `replication.json`.
//!
//! ```json
//! {"role": "replica", "epoch": 3, "epoch_start": 1200, "primary": "node-a",
//!  "epochs": [{"epoch": 1, "start": 0}, {"epoch": 3, "start": 1200}]}
//! ```
//!
//! `epochs` is the journal's epoch history ([`Lineage`]): which primary term wrote which records.
//! A queue without the file has never been replicated: it is the primary of epoch 1, which began
//! at sequence 0, unless its meta file's policy words say it was created as a replica. The file is replaced atomically (write, fsync, rename). The epoch is mirrored
//! into the meta file's epoch word for `repliq inspect`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::lineage::Lineage;
pub use crate::journal::Role;
use crate::journal::{Journal, Policy};
use crate::{QueueError, ReplicationError, Result};

/// The state file's name inside a queue directory.
pub const STATE_FILE: &str = "replication.json";

/// The lock file (`flock`) that orders a promotion against a replica's appends.
pub(crate) const LOCK_FILE: &str = ".replication.lock";

/// Takes the queue's replication lock, shared (a replica applying a batch) or exclusive (a
/// promotion). Released when the returned file is dropped.
pub(crate) fn state_lock(dir: &Path, exclusive: bool) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let io = |e| QueueError::io(format!("locking {}", path.display()), e);
    let file = crate::journal::perms::open_or_create(dir, &path).map_err(io)?;
    if exclusive {
        file.lock().map_err(io)?;
    } else {
        file.lock_shared().map_err(io)?;
    }
    Ok(file)
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
    /// How many replicas must acknowledge a message in synchronous mode (0: not known, read as
    /// 1 when `synchronous`).
    #[serde(default)]
    pub required_acks: u32,
    /// Which primary term wrote which of this node's records (docs/REPLICATION.md, "Epochs").
    /// Empty in a file written before histories were kept: see [`ReplicationState::lineage`].
    #[serde(default, skip_serializing_if = "Lineage::is_empty")]
    pub epochs: Lineage,
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
            required_acks: 0,
            epochs: Lineage::default(),
        }
    }
}

impl ReplicationState {
    /// The epoch history of this node's records. A file without one (written before histories
    /// were kept, or a new queue) is read as the rule before histories: a primary's records from
    /// `epoch_start` on are its epoch's; a replica's records are all taken as of its newest epoch
    /// (a newer primary's records then replace them from its epoch's start on).
    #[must_use]
    pub fn lineage(&self) -> Lineage {
        match (self.epochs.is_empty(), self.role) {
            (false, _) => self.epochs.clone(),
            (true, Role::Primary) => Lineage::of(self.epoch, self.epoch_start),
            (true, Role::Replica) => Lineage::of(self.epoch, 0),
        }
    }

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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::from_meta(dir),
            Err(e) => Err(QueueError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The state of a queue without a state file: what its meta file's policy words say. A
    /// replica's queue is created with the replica role in those words, before its state file
    /// is written; a daemon that scans the directory in between must not take it for a primary.
    fn from_meta(dir: &Path) -> Result<ReplicationState> {
        if !dir.join(crate::journal::format::META_FILE).exists() {
            return Ok(ReplicationState::default());
        }
        let meta = crate::journal::meta::Meta::open(dir, true)?;
        let policy = Policy::load(&meta);
        Ok(match policy.role {
            Role::Primary => ReplicationState::default(),
            Role::Replica => ReplicationState {
                role: Role::Replica,
                epoch: meta.epoch().load(std::sync::atomic::Ordering::Acquire),
                epoch_start: 0,
                ..ReplicationState::default()
            },
        })
    }

    /// Replaces the state file atomically, then publishes the policy in the queue's meta file
    /// (if the queue exists), where every producer handle reads it on each `enqueue`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if it cannot be written; errors opening the meta file.
    pub fn store(&self, dir: &Path) -> Result<()> {
        if self.role == Role::Replica {
            // A demotion fences local producers before anything else.
            self.publish(dir)?;
        }
        self.write_file(dir)?;
        self.publish(dir)
    }

    fn publish(&self, dir: &Path) -> Result<()> {
        if dir.join(crate::journal::format::META_FILE).exists() {
            let journal = Journal::open(dir, false)?;
            self.mirror(&journal);
        }
        Ok(())
    }

    fn write_file(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = crate::journal::temp_path(dir, &format!("tmp-{STATE_FILE}"));
        let io = |e| QueueError::io(format!("writing {}", path.display()), e);
        let json = serde_json::to_vec_pretty(self).map_err(|e| QueueError::Other(e.to_string()))?;
        {
            use std::io::Write;
            let _ = std::fs::remove_file(&tmp);
            let mut f = crate::journal::perms::create_new(
                dir,
                std::fs::OpenOptions::new().write(true),
                &tmp,
            )
            .map_err(io)?;
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
    /// [`ReplicationError::ReadOnlyReplica`] naming the primary if it is a replica.
    pub fn check_writable(&self, dir: &Path) -> Result<()> {
        match self.role {
            Role::Primary => Ok(()),
            Role::Replica => Err(ReplicationError::ReadOnlyReplica {
                path: dir.to_path_buf(),
                primary: self.primary.clone(),
                epoch: self.epoch,
            }
            .into()),
        }
    }

    /// The policy producers obey, as published in the meta file.
    pub(crate) fn policy(&self) -> Policy {
        let required_acks = if self.role == Role::Primary && self.synchronous {
            self.required_acks.max(1)
        } else {
            0
        };
        Policy {
            role: self.role,
            epoch: self.epoch.max(1),
            required_acks,
            ack_timeout: std::time::Duration::from_millis(self.ack_timeout_ms.max(1)),
        }
    }

    /// Makes the replica in `dir` the primary of a new epoch, which begins at the next sequence
    /// number after what it holds. Producers may write it from now on (a lease an election left
    /// in the meta file is lifted: `journal/lease.rs`); a `repliqd` running on
    /// this node starts streaming it to its peers, and the old primary, when it comes back,
    /// becomes a replica and moves aside anything it wrote that this replica never received.
    ///
    /// # Errors
    ///
    /// [`QueueError::Replication`] if the queue is already a primary; I/O and corruption errors.
    pub fn promote(dir: &Path) -> Result<ReplicationState> {
        let current = ReplicationState::load(dir)?;
        if current.role == Role::Primary {
            return Err(QueueError::protocol(format!(
                "{} is already the primary of epoch {}",
                dir.display(),
                current.epoch
            )));
        }
        // Excludes the replica service's appends (it holds the lock shared per batch): the new
        // epoch starts after everything the old primary's stream delivered, and nothing it sends
        // later is applied (the service sees the newer epoch and refuses).
        let _lock = state_lock(dir, true)?;
        let state = Self::promote_locked(dir)?;
        // A manual promotion is the operator's decision, not an election's: a lease word an
        // election left behind (revoked, or run out) would refuse every write.
        super::clear_lease(dir)?;
        Ok(state)
    }

    /// Makes the queue the primary of at least `epoch` (an election's epoch): a replica is
    /// promoted as by [`ReplicationState::promote`], and a primary of an older epoch takes
    /// `epoch`. All under the state lock, so that a newer primary's stream, which the replica
    /// service admits under the same lock, lands before or after, never in between (where this
    /// would store `Primary` over its demotion).
    ///
    /// # Errors
    ///
    /// I/O and corruption errors.
    pub fn promote_to_epoch(dir: &Path, epoch: u64) -> Result<ReplicationState> {
        let _lock = state_lock(dir, true)?;
        let mut state = ReplicationState::load(dir)?;
        if state.role == Role::Replica {
            state = Self::promote_locked(dir)?;
        }
        if state.epoch < epoch {
            // The new term writes from the journal's tail on.
            let next = if dir.join(crate::journal::format::META_FILE).exists() {
                let journal = Journal::open(dir, false)?;
                crate::journal::replica::ByteSink::open(journal)?.next_seq()
            } else {
                0
            };
            let mut lineage = state.lineage();
            lineage.begin(epoch, next);
            state.epoch = epoch;
            state.epochs = lineage;
            state.store(dir)?;
        }
        Ok(state)
    }

    /// Fences a primary: it becomes a replica (of no known primary yet), so that its handles
    /// stop writing. Under the state lock, for the reason given at
    /// [`ReplicationState::promote_to_epoch`]: without it, a fence that read the state before the
    /// replica service stored a newer epoch would store the old epoch back. Returns whether the
    /// queue was a primary.
    ///
    /// # Errors
    ///
    /// I/O and corruption errors.
    pub fn demote(dir: &Path) -> Result<bool> {
        let _lock = state_lock(dir, true)?;
        let mut state = ReplicationState::load(dir)?;
        if state.role == Role::Replica {
            return Ok(false);
        }
        state.role = Role::Replica;
        state.primary = None;
        state.synchronous = false;
        state.store(dir)?;
        Ok(true)
    }

    /// Makes a primary queue that does not wait for replicas wait as the node's `policy` says
    /// (synchronous, its required acknowledgements and timeout), at once: for queues that existed
    /// before a synchronous daemon started, whose producers would otherwise get `Ok` without any
    /// replica until the daemon's replication task takes the queue up (that task then publishes
    /// the exact requirement). Replicas, queues that already wait, and an asynchronous policy are
    /// left alone. Returns whether the queue changed.
    ///
    /// # Errors
    ///
    /// I/O and corruption errors.
    pub fn adopt_node_policy(dir: &Path, policy: &crate::journal::NodePolicy) -> Result<bool> {
        if policy.required_acks == 0 {
            return Ok(false);
        }
        let _lock = state_lock(dir, true)?;
        let mut state = ReplicationState::load(dir)?;
        if state.role != Role::Primary || (state.synchronous && state.required_acks > 0) {
            return Ok(false);
        }
        state.synchronous = true;
        state.required_acks = policy.required_acks;
        state.ack_timeout_ms = u64::try_from(policy.ack_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        state.store(dir)?;
        Ok(true)
    }

    /// [`ReplicationState::promote`] with the state lock held by the caller.
    fn promote_locked(dir: &Path) -> Result<ReplicationState> {
        let current = ReplicationState::load(dir)?;
        if current.role == Role::Primary {
            return Err(QueueError::protocol(format!(
                "{} is already the primary of epoch {}",
                dir.display(),
                current.epoch
            )));
        }
        let journal = Journal::open(dir, false)?;
        let next = crate::journal::replica::ByteSink::open(journal.clone())?.next_seq();
        // The node's policy (written by its daemon into the persistence root) says whether
        // writes here wait for replicas: they do from the promotion on, not only once the
        // daemon's replication task has started (until then they time out instead of returning
        // `Ok` for records no replica holds).
        let node = dir
            .parent()
            .and_then(|root| crate::journal::NodePolicy::read(root).ok().flatten());
        // A damaged or hostile state file may hold the largest epoch: there is no newer one.
        let epoch = current
            .epoch
            .checked_add(1)
            .ok_or_else(|| QueueError::Corrupt {
                path: dir.join(STATE_FILE),
                offset: 0,
                reason: format!(
                    "epoch {} is the largest there is: the queue cannot be promoted to a newer one",
                    current.epoch
                ),
            })?;
        let mut epochs = current.lineage();
        epochs.begin(epoch, next);
        let state = ReplicationState {
            role: Role::Primary,
            epoch,
            epoch_start: next,
            primary: None,
            epochs,
            ..match node {
                Some(n) if n.required_acks > 0 => ReplicationState {
                    synchronous: true,
                    required_acks: n.required_acks,
                    ack_timeout_ms: u64::try_from(n.ack_timeout.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                    ..ReplicationState::default()
                },
                _ => ReplicationState::default(),
            }
        };
        // An acknowledged word left from an earlier term of this node must not acknowledge the
        // records of this one.
        journal
            .meta
            .acked()
            .fetch_min(next, std::sync::atomic::Ordering::SeqCst);
        // The producers' table the old primary shipped, resolved against this journal, is the
        // new primary's before any producer can write here (docs/REPLICATION.md, "The
        // producers' table"): a batch retried after the failover is acknowledged again for the
        // records this node holds and written for the rest.
        let _installed = super::producer_table::install_on_promotion(dir, next)?;
        #[cfg(feature = "replication")]
        match &_installed {
            super::producer_table::RollBack::MovedAside { to, reason } => {
                tracing::warn!(queue = %dir.display(), moved = %to.display(), %reason, "promotion: the producers' table was moved aside; remote producers start afresh here");
            }
            super::producer_table::RollBack::Resolved(short) if !short.is_empty() => {
                tracing::info!(queue = %dir.display(), put_back = ?short, "promotion: the producers' table forgets the records this replica never received");
            }
            _ => {}
        }
        // `store` also publishes the policy into the meta file every handle reads.
        state.store(dir)?;
        Ok(state)
    }

    /// Publishes this state's policy in the meta file of the open `journal`.
    pub(crate) fn mirror(&self, journal: &Journal) {
        self.policy().store(&journal.meta);
    }
}

#[cfg(all(test, not(repliq_loom)))]
mod test {
    use std::time::{Duration, Instant};

    use super::*;

    fn primary_queue(epoch: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        drop(
            crate::QueueOptions::new()
                .capacity(100)
                .create::<u64>(&path)
                .unwrap(),
        );
        let state = ReplicationState {
            role: Role::Primary,
            epoch,
            ..ReplicationState::default()
        };
        state.store(&path).unwrap();
        dir
    }

    /// The election's fence and the replica service's admission of a newer epoch are ordered by
    /// the state lock: a fence never stores the epoch it read before the service stored a newer
    /// one (found by the trace test: a resumed node's file went back to epoch 1).
    #[test]
    fn a_fence_waits_for_the_replica_service_and_keeps_the_epoch_it_stored() {
        let dir = primary_queue(1);
        let path = dir.path().join("q");
        let held = Duration::from_millis(300);
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let service = {
            let path = path.clone();
            std::thread::spawn(move || {
                // As `replica_service::admit` does: shared lock, load, store a newer epoch.
                let _lock = state_lock(&path, false).unwrap();
                locked_tx.send(()).unwrap();
                let mut state = ReplicationState::load(&path).unwrap();
                std::thread::sleep(held);
                state.role = Role::Replica;
                state.epoch = 2;
                state.primary = Some("node-c".into());
                state.store(&path).unwrap();
            })
        };
        locked_rx.recv().unwrap();
        let started = Instant::now();
        let was_primary = ReplicationState::demote(&path).unwrap();
        let waited = started.elapsed();
        service.join().unwrap();
        assert!(
            waited + Duration::from_millis(50) >= held,
            "the fence did not wait for the lock ({waited:?})"
        );
        assert!(!was_primary, "the fence saw the service's demotion");
        let state = ReplicationState::load(&path).unwrap();
        assert_eq!((state.role, state.epoch), (Role::Replica, 2));
        assert_eq!(state.primary.as_deref(), Some("node-c"));
    }

    /// Found by the `replication_state` fuzz target (its crash input, compacted): a state file
    /// whose epoch history is out of order loaded as if it were well formed.
    #[test]
    fn a_state_file_with_an_out_of_order_history_is_corrupt() {
        let dir = primary_queue(2);
        let path = dir.path().join("q");
        std::fs::write(
            path.join(STATE_FILE),
            r#"{"role": "primary", "epoch": 2, "epoch_start": 41, "primary": null,
                "synchronous": false, "ack_timeout_ms": 5000, "required_acgs": 0,
                "epochs": [{"epoch": 5, "start": 0}, {"epoch": 2, "start": 41}]}"#,
        )
        .unwrap();
        match ReplicationState::load(&path) {
            Err(QueueError::Corrupt {
                path: p, reason, ..
            }) => {
                assert_eq!(p, path.join(STATE_FILE));
                assert!(reason.contains("epoch history out of order"), "{reason}");
            }
            other => panic!("loaded a malformed history: {other:?}"),
        }
    }

    /// Found by the `replication_state` fuzz target: promoting a replica whose state file holds
    /// the largest epoch overflowed (a panic in debug builds; in release builds the primary of
    /// epoch 0, older than every epoch its replicas had seen).
    #[test]
    fn promoting_past_the_largest_epoch_is_refused() {
        let dir = primary_queue(2);
        let path = dir.path().join("q");
        std::fs::write(
            path.join(STATE_FILE),
            r#"{"role":"replica","epoch":18446744073709551615,"epoch_start":0}"#,
        )
        .unwrap();
        match ReplicationState::promote(&path) {
            Err(QueueError::Corrupt {
                path: p, reason, ..
            }) => {
                assert_eq!(p, path.join(STATE_FILE));
                assert!(reason.contains("largest"), "{reason}");
            }
            other => panic!("promoted past the largest epoch: {other:?}"),
        }
        let state = ReplicationState::load(&path).unwrap();
        assert_eq!((state.role, state.epoch), (Role::Replica, u64::MAX));
        assert!(ReplicationState::promote_to_epoch(&path, u64::MAX).is_err());
    }

    #[test]
    fn promote_to_epoch_raises_a_primarys_epoch_and_promotes_a_replica() {
        let dir = primary_queue(3);
        let path = dir.path().join("q");
        assert_eq!(
            ReplicationState::promote_to_epoch(&path, 5).unwrap().epoch,
            5
        );
        assert_eq!(
            ReplicationState::promote_to_epoch(&path, 4).unwrap().epoch,
            5
        );
        assert!(ReplicationState::demote(&path).unwrap());
        let state = ReplicationState::promote_to_epoch(&path, 2).unwrap();
        assert_eq!((state.role, state.epoch), (Role::Primary, 6));
    }
}
