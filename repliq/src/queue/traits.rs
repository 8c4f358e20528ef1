//! The seed's interface: [`Queue`], [`PersistentQueue`]. Native `async fn` in traits; the
//! futures are `Send`, so the traits can be used from any tokio task.
//! ([`ReplicatedQueue`](crate::ReplicatedQueue) adds replication, in the layer above.)

use std::future::Future;
use std::path::Path;

use crate::{Message, QueueError};

/// An asynchronous queue of `T`.
pub trait Queue<T: Message + Send + Sync> {
    /// Appends `item`. Returns once it is committed (and, if the queue replicates
    /// synchronously, acknowledged by the replicas).
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] if the backlog reached the capacity (nothing is written);
    /// [`QueueError::Serialization`] if the message is too large; [`QueueError::Replication`]
    /// on a replica, when fenced, or when the acknowledgement timed out; I/O and corruption
    /// errors.
    fn enqueue(&self, item: T) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Takes the next message for this handle's consumer; `Ok(None)` when the queue is empty
    /// (it does not wait; see `recv` for that).
    ///
    /// # Errors
    ///
    /// [`QueueError::Deserialization`] or [`QueueError::Corrupt`] for bad bytes; I/O errors.
    fn dequeue(&self) -> impl Future<Output = Result<Option<T>, QueueError>> + Send;
}

/// A queue stored in a directory.
pub trait PersistentQueue<T: Message + Send + Sync>: Queue<T> {
    /// Creates the queue at `path` with room for `capacity` unconsumed messages, or opens it if
    /// it exists with that capacity.
    ///
    /// # Errors
    ///
    /// [`QueueError::TypeMismatch`] if the queue holds another message type;
    /// [`QueueError::InvalidConfig`] for a capacity of 0, or if the queue exists with another
    /// capacity (fixed at creation: [`open`](Self::open) keeps the stored one); I/O and
    /// corruption errors.
    fn new(path: impl AsRef<Path>, capacity: u64) -> Result<Self, QueueError>
    where
        Self: Sized;

    /// Opens the existing queue at `path`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] of kind `NotFound` ("no queue at DIR yet") if there is no queue;
    /// [`QueueError::TypeMismatch`]; corruption.
    fn open(path: impl AsRef<Path>) -> Result<Self, QueueError>
    where
        Self: Sized;
}
