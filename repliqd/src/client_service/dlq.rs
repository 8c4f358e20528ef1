//! A remote consumer's dead-letter queue (`max_deliver`): a repliq queue of
//! [`DeadLetter`] records under the node's persistence path, in the connectors' format
//! (`connector` is the consumer's name, `direction` is `"consumer"`). A letter is synced to
//! disk before its record counts as done, so the queue is also the durable record of what was
//! dead-lettered: after a restart of the daemon the consumer's records after its cursor that
//! have a letter are not delivered again ([`dead_lettered`]).

use std::path::Path;

use repliq::dead_letter::{DeadLetter, DeadLetters, now_unix_nanos};
use repliq::{QueueError, StartAt, Tailer};

/// `direction` of a remote consumer's letters.
pub const DIRECTION: &str = "consumer";

/// The default dead-letter queue of queue `queue`.
pub fn default_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Opens (creates on first use) the dead-letter queue at `path`.
///
/// # Errors
///
/// As [`DeadLetters::open`] (another message type at `path`: `TypeMismatch`).
pub fn open(path: &Path) -> Result<DeadLetters, QueueError> {
    DeadLetters::open(path)
}

/// Writes (and syncs) the letter of record `seq` of `queue`, consumer `consumer`.
///
/// # Errors
///
/// As [`DeadLetters::write`].
pub fn write(
    letters: &mut DeadLetters,
    queue: &str,
    consumer: &str,
    seq: u64,
    reason: String,
    body: &[u8],
) -> Result<u64, QueueError> {
    letters.write(&DeadLetter {
        connector: consumer.to_owned(),
        direction: DIRECTION.to_owned(),
        queue: queue.to_owned(),
        seq: Some(seq),
        remote_id: None,
        reason,
        body: body.to_vec(),
        time_unix_nanos: now_unix_nanos(),
    })
}

/// The sequences of `queue`'s records at or after `from` that consumer `consumer` dead-lettered
/// into the queue at `path` (none if it does not exist).
///
/// # Errors
///
/// As [`Tailer::open`] and [`Tailer::try_next`] (another message type at `path`).
pub fn dead_lettered(
    path: &Path,
    queue: &str,
    consumer: &str,
    from: u64,
) -> Result<Vec<u64>, QueueError> {
    if !path.join("queue.meta").exists() {
        return Ok(Vec::new());
    }
    let mut tailer = Tailer::<DeadLetter>::open(path, StartAt::Earliest)?;
    let mut out = Vec::new();
    while let Some(letter) = tailer.try_next()? {
        if letter.direction == DIRECTION && letter.queue == queue && letter.connector == consumer {
            out.extend(letter.seq.filter(|s| *s >= from));
        }
    }
    Ok(out)
}
