//! Dead-letter queues: repliq queues of [`DeadLetter`] records, the messages that could not be
//! delivered, with the reason. One format for everyone who dead-letters: the connectors of
//! `repliq-connect` and the daemon's remote pull consumers (`max_deliver`). The type keeps its
//! wire name `repliq.connect.DeadLetter` (where it was first defined), so existing dead-letter
//! queues keep opening.

use std::path::{Path, PathBuf};

use crate::{JournalQueue, QueueError, QueueOptions};

/// A message that could not be delivered, with the reason. Written to the dead-letter queue
/// before the message counts as done (a connector's cursor moves, a source acknowledges, a
/// remote consumer's cursor may pass it).
///
/// For a remote consumer (`repliqd`'s client service) `connector` holds the consumer's name and
/// `direction` is `"consumer"`.
#[repliq::message(name = "repliq.connect.DeadLetter")]
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The connector's name (a remote consumer's name).
    pub connector: String,
    /// `"sink"` or `"source"` (connectors), `"consumer"` (remote consumers).
    pub direction: String,
    /// The queue the connector (consumer) serves.
    pub queue: String,
    /// The message's sequence in that queue (sinks, consumers).
    pub seq: Option<u64>,
    /// The remote's ID of the message (sources: e.g. the Redis stream entry ID).
    pub remote_id: Option<String>,
    /// Why it was not delivered.
    pub reason: String,
    /// The message: the body sent or received (JSON text, or archived bytes).
    pub body: Vec<u8>,
    /// When it was dead-lettered, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
}

/// The writer of a dead-letter queue.
#[derive(Debug)]
pub struct DeadLetters {
    queue: JournalQueue<DeadLetter>,
}

impl DeadLetters {
    /// Opens (or creates, with room for 1 M records) the dead-letter queue at `path`.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::create`]; [`QueueError::TypeMismatch`] if `path` holds another type.
    pub fn open(path: &Path) -> Result<DeadLetters, QueueError> {
        let queue = QueueOptions::new()
            .capacity(1 << 20)
            .producer()
            .create::<DeadLetter>(path)?;
        Ok(DeadLetters { queue })
    }

    /// The queue directory.
    pub fn path(&self) -> PathBuf {
        self.queue.path().to_path_buf()
    }

    /// Appends `letter` and syncs it to disk, so that it is durable before the message counts
    /// as done.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::enqueue`] and [`JournalQueue::flush`].
    pub fn write(&mut self, letter: &DeadLetter) -> Result<u64, QueueError> {
        let seq = self.queue.enqueue(letter)?;
        self.queue.flush()?;
        Ok(seq)
    }
}

/// Nanoseconds since the Unix epoch now (0 before it), for [`DeadLetter::time_unix_nanos`].
#[must_use]
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
