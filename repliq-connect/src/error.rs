//! [`ConnectError`], why a connector stopped, and [`Failure`], what a remote operation reports.

use std::path::PathBuf;

/// Why a connector could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A configuration value is wrong.
    #[error("connector {connector:?}: {key}: {reason}")]
    Config {
        /// The connector's name.
        connector: String,
        /// The offending key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The queue (or dead-letter queue) failed in a way retrying cannot heal.
    #[error("connector {connector:?}: queue {path}: {source}")]
    Queue {
        /// The connector's name.
        connector: String,
        /// The queue directory.
        path: PathBuf,
        /// The queue's error.
        #[source]
        source: Box<repliq::QueueError>,
    },
    /// The remote rejected a message permanently and no dead-letter queue is configured: the
    /// connector stops rather than drop it. The message stays unacknowledged.
    #[error(
        "connector {connector:?}: message {id} rejected permanently ({reason}) and no \
         dead_letter queue is configured; stopped without dropping it"
    )]
    Undeliverable {
        /// The connector's name.
        connector: String,
        /// The queue sequence (sink) or remote ID (source).
        id: String,
        /// The remote's or the encoder's reason.
        reason: String,
    },
}

/// What a remote operation reports when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It may work later (connection lost, server loading, timeout): retried with backoff.
    Transient(String),
    /// Message `index` of the batch can never be written (a value the remote refuses): the
    /// messages before it were written, it is dead-lettered, the rest are retried.
    Rejected {
        /// Position in the batch.
        index: usize,
        /// Why, from the remote.
        reason: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(r) => write!(f, "transient: {r}"),
            Failure::Rejected { index, reason } => write!(f, "message {index} rejected: {reason}"),
        }
    }
}
