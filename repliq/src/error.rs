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
    /// Replication failed: a peer is unreachable, refused a frame or did not acknowledge in time.
    #[error("replication error: {0}")]
    Replication(String),
    /// The queue's backlog reached its capacity; nothing was written.
    #[error("queue is full: the backlog reached its capacity of {capacity} messages")]
    Full {
        /// The capacity the queue was created with.
        capacity: u64,
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

/// `Result` with [`QueueError`].
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
