//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in repliq.
///
/// Each variant says *what* failed and, where a file is involved, *where*. The enum is
/// `#[non_exhaustive]`: new cases are added as users need to act on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// An operating-system I/O operation failed.
    #[error("I/O error: {context}: {source}")]
    Io {
        /// What repliq was doing, including the file involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Replication refused or failed the operation; [`ReplicationError`] says which case.
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
    /// The queue's backlog reached its capacity; nothing was written.
    #[error(
        "queue is full: the backlog of consumer {slowest:?} reached the capacity of {capacity} \
         messages"
    )]
    Full {
        /// The capacity the queue was created with.
        capacity: u64,
        /// The consumer whose backlog it is (the slowest cursor). A `JournalQueue` registers its
        /// consumer name when it opens (`"default"` unless set; not for
        /// `QueueOptions::producer()` handles; the async handle's `new`/`open` register it at
        /// the first receive), so a name no one reads under holds the queue full.
        slowest: String,
    },
    /// The queue holds no message for this consumer.
    #[error("queue is empty")]
    Empty,
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A message could not be serialized (for example, it does not fit into its slot).
    #[error("cannot serialize a `{type_name}`: {reason}")]
    Serialization {
        /// `Message::NAME` of the type.
        type_name: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Bytes could not be read back as a message: misaligned, truncated or corrupt.
    #[error("cannot read a `{type_name}` from {len} bytes: {reason}")]
    Deserialization {
        /// `Message::NAME` of the expected type.
        type_name: &'static str,
        /// Length of the byte slice that was offered.
        len: usize,
        /// What went wrong.
        reason: String,
    },
    /// The queue at `path` holds a different message type than the one requested.
    #[error(
        "queue {path} holds messages of type `{found_name}` (fingerprint {found_fingerprint:#018x}), \
         not `{expected_name}` (fingerprint {expected_fingerprint:#018x})"
    )]
    TypeMismatch {
        /// The queue directory.
        path: PathBuf,
        /// The type the caller asked for.
        expected_name: String,
        /// Its fingerprint.
        expected_fingerprint: u64,
        /// The type recorded in the queue.
        found_name: String,
        /// Its fingerprint.
        found_fingerprint: u64,
    },
    /// A file of the queue is corrupt at the given offset.
    #[error("corrupt queue file {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first damage found.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl QueueError {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        QueueError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The cases of [`QueueError::Replication`], so callers can act on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The queue is a read-only replica on this node: write to its primary, or promote it.
    #[error(
        "{} is a read-only replica of {} (epoch {epoch}): write to the primary, or promote this \
         replica with `repliq promote`",
        path.display(),
        primary.as_deref().unwrap_or("another node")
    )]
    ReadOnlyReplica {
        /// The queue directory.
        path: PathBuf,
        /// The primary's node name, when known.
        primary: Option<String>,
        /// The newest epoch this node has seen.
        epoch: u64,
    },
    /// This handle wrote as the primary of `handle_epoch`, and the queue has since been demoted
    /// or has a newer primary (`epoch`). The handle writes nothing more; open a new one on the
    /// current primary.
    #[error(
        "{} was fenced: this handle wrote as primary of epoch {handle_epoch}, but the queue is now \
         {} of epoch {epoch}",
        path.display(),
        if *replica { "a replica" } else { "the primary" }
    )]
    Fenced {
        /// The queue directory.
        path: PathBuf,
        /// The epoch the handle wrote in.
        handle_epoch: u64,
        /// The queue's epoch now.
        epoch: u64,
        /// Whether the queue is now a replica on this node.
        replica: bool,
    },
    /// The queue's primary on this node is elected by lease, and the lease does not allow a write
    /// now: it ran out (the node's `repliqd` has not renewed it: stopped, paused, or cut off from
    /// the election's store) or this node does not hold it. Nothing was written. The write may
    /// succeed later if the node renews its lease; otherwise the queue becomes a replica here and
    /// the write belongs on the new primary.
    #[error(
        "{}: {}; nothing was written: writes are refused until this node's repliqd renews the \
         lease, or another node takes over",
        path.display(),
        match ran_out_ago {
            Some(ago) => format!("this node's lease on the queue ran out {ago:?} ago"),
            None => "this node does not hold the queue's lease".to_owned(),
        }
    )]
    LeaseExpired {
        /// The queue directory.
        path: PathBuf,
        /// How long ago the lease ran out; `None` when it was revoked or is not held.
        ran_out_ago: Option<std::time::Duration>,
    },
    /// A synchronous `enqueue` wrote the message locally, but the required replicas did not
    /// acknowledge it within the timeout. The message stays in the queue and will still be
    /// replicated when the replicas return; an application that must know retries its own
    /// check (for example by waiting for [`Self::AckTimeout::seq`] to be acknowledged later) or
    /// treats the message as not yet durable elsewhere.
    #[error(
        "message {seq} of {} is written locally but was not acknowledged by the replicas within \
         {timeout:?} (acknowledged up to {acked}); it will still be replicated",
        path.display()
    )]
    AckTimeout {
        /// The queue directory.
        path: PathBuf,
        /// The message's sequence number.
        seq: u64,
        /// One past the highest sequence the replicas acknowledged.
        acked: u64,
        /// The timeout that passed.
        timeout: std::time::Duration,
    },
    /// A peer could not be reached or configured.
    #[error("peer {peer} is unreachable: {reason}")]
    PeerUnreachable {
        /// The peer's name or address.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A peer refused the stream, or the protocol was violated (stale epoch, gap, divergence).
    #[error("{0}")]
    Protocol(String),
}

impl QueueError {
    /// A [`ReplicationError::Protocol`] error.
    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        QueueError::Replication(ReplicationError::Protocol(message.into()))
    }
}

/// `Result` with [`QueueError`].
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
