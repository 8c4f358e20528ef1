//! The replication policy of a queue, in words of its mapped meta file, so that every handle in
//! every process obeys the current policy at the cost of a few loads per `enqueue`.
//!
//! Whoever owns replication for the queue on this node (the daemon, or an embedded
//! `configure_replication`) writes the policy; producers read it on every append. Layout
//! (`docs/FORMAT.md`): epoch at 512 (u64), role at 520 (u32: 0 primary, 1 replica), required
//! acknowledgements at 524 (u32: 0 means asynchronous, producers do not wait), acknowledgement
//! timeout in milliseconds at 528 (u64). A file written before these words existed reads as
//! "primary of epoch 1, asynchronous", which is what such a queue was.
//!
//! The words are independent atomics: a reader may see a policy change half applied. Writers
//! order their stores so that the half-applied state is the safer one (a demotion writes the
//! role first, a promotion writes it last).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::meta::Meta;

/// Whether this node writes the queue or follows another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Producers on this node write the queue; it is streamed to replicas.
    Primary,
    /// The queue is a read-only copy of another node's.
    Replica,
}

/// A queue's replication policy as every handle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// This node's role for the queue.
    pub role: Role,
    /// The newest epoch this node has seen (at least 1).
    pub epoch: u64,
    /// Replicas that must acknowledge a message before a producer's `enqueue` returns; 0 when
    /// the queue replicates asynchronously (or not at all).
    pub required_acks: u32,
    /// How long a producer waits for those acknowledgements.
    pub ack_timeout: Duration,
}

/// Used when the timeout word is 0 (never set).
pub(crate) const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Policy {
    /// Reads the policy words.
    #[inline]
    pub(crate) fn load(meta: &Meta) -> Policy {
        let role = match meta.role().load(Ordering::Acquire) {
            0 => Role::Primary,
            _ => Role::Replica,
        };
        let timeout_ms = meta.ack_timeout_ms().load(Ordering::Acquire);
        Policy {
            role,
            epoch: meta.epoch().load(Ordering::Acquire).max(1),
            required_acks: meta.required_acks().load(Ordering::Acquire),
            ack_timeout: if timeout_ms == 0 {
                DEFAULT_ACK_TIMEOUT
            } else {
                Duration::from_millis(timeout_ms)
            },
        }
    }

    /// Writes the policy words. A demotion publishes the role before anything else, a promotion
    /// publishes it after everything else, so a reader that sees a mix errs on the side of
    /// refusing or waiting.
    pub(crate) fn store(&self, meta: &Meta) {
        let role = match self.role {
            Role::Primary => 0,
            Role::Replica => 1,
        };
        let timeout_ms = u64::try_from(self.ack_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if self.role == Role::Replica {
            meta.role().store(role, Ordering::Release);
        }
        meta.ack_timeout_ms().store(timeout_ms, Ordering::Release);
        meta.required_acks()
            .store(self.required_acks, Ordering::Release);
        meta.epoch().store(self.epoch, Ordering::Release);
        if self.role == Role::Primary {
            meta.role().store(role, Ordering::Release);
        }
    }
}

impl Policy {
    /// Writes the policy words into the bytes of a meta file that is not published yet.
    pub(crate) fn encode_into(&self, meta: &mut [u8]) {
        use super::format::{M_ACK_TIMEOUT_MS, M_EPOCH, M_REQUIRED_ACKS, M_ROLE};
        let role: u32 = match self.role {
            Role::Primary => 0,
            Role::Replica => 1,
        };
        let timeout_ms = u64::try_from(self.ack_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        meta[M_EPOCH..M_EPOCH + 8].copy_from_slice(&self.epoch.to_le_bytes());
        meta[M_ROLE..M_ROLE + 4].copy_from_slice(&role.to_le_bytes());
        meta[M_REQUIRED_ACKS..M_REQUIRED_ACKS + 4]
            .copy_from_slice(&self.required_acks.to_le_bytes());
        meta[M_ACK_TIMEOUT_MS..M_ACK_TIMEOUT_MS + 8].copy_from_slice(&timeout_ms.to_le_bytes());
    }
}

/// `true` once the replicas acknowledged record `seq` (the replication owner publishes one past
/// the highest sequence `required_acks` replicas hold).
#[inline]
pub(crate) fn acked_past(journal: &super::Journal, seq: u64) -> bool {
    journal.meta.acked().load(Ordering::Acquire) > seq
}

/// The error of a synchronous `enqueue` whose acknowledgement did not come in time.
pub(crate) fn ack_timeout_error(
    journal: &super::Journal,
    seq: u64,
    timeout: Duration,
) -> crate::QueueError {
    crate::ReplicationError::AckTimeout {
        path: journal.dir.clone(),
        seq,
        acked: journal.meta.acked().load(Ordering::Acquire),
        timeout,
    }
    .into()
}

/// Blocks until the replicas acknowledged record `seq`, spinning briefly, then sleeping on the
/// acknowledgement futex.
///
/// # Errors
///
/// [`ReplicationError::AckTimeout`](crate::ReplicationError::AckTimeout) if `timeout` passes
/// first. The record stays written locally.
pub(crate) fn wait_acked(
    journal: &super::Journal,
    seq: u64,
    timeout: Duration,
) -> crate::Result<()> {
    if acked_past(journal, seq) {
        return Ok(());
    }
    let meta = &journal.meta;
    let deadline = std::time::Instant::now() + timeout;
    let done = super::notify::wait_until(
        meta.ack_notify(),
        meta.ack_waiters(),
        Some(deadline),
        || Ok(acked_past(journal, seq).then_some(())),
    )?;
    done.ok_or_else(|| ack_timeout_error(journal, seq, timeout))
}
