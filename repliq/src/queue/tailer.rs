//! [`Tailer`]: reads a queue from any position without a consumer cursor.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StartAt;
use super::options::check_type;
use crate::journal::{Appender, Durability, Journal, Reader, notify};
use crate::{Archived, Message, Result};

/// Reads a queue from a position without a cursor: from the start, the end, or a sequence.
#[derive(Debug)]
pub struct Tailer<T> {
    reader: Reader,
    _type: PhantomData<fn() -> T>,
}

impl<T: Message> Tailer<T> {
    pub(crate) fn new(journal: Arc<Journal>, start: StartAt, verify: bool) -> Result<Self> {
        let seq = match start {
            StartAt::Earliest => journal.earliest_seq()?,
            StartAt::Seq(s) => s,
            StartAt::Latest => Appender::new(journal.clone(), Durability::PageCache)?.next_seq()?,
        };
        Ok(Tailer {
            reader: Reader::at(journal, seq, verify)?,
            _type: PhantomData,
        })
    }

    /// Opens the queue at `path` and tails it from `start`.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::open`](crate::QueueOptions::open).
    pub fn open(path: impl AsRef<Path>, start: StartAt) -> Result<Self> {
        let journal = Journal::open(path.as_ref(), false)?;
        check_type::<T>(&journal)?;
        Tailer::new(journal, start, true)
    }

    /// The sequence number of the next message.
    pub fn seq(&self) -> u64 {
        self.reader.seq()
    }

    /// Runs `f` on the next message in place and moves on. `Ok(None)` if none yet.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`](crate::QueueError::Corrupt), [`QueueError::Deserialization`](crate::QueueError::Deserialization).
    pub fn read<R>(&mut self, f: impl FnOnce(u64, &Archived<T>) -> R) -> Result<Option<R>> {
        let Some(rec) = self.reader.peek()? else {
            return Ok(None);
        };
        let r = f(rec.seq(), crate::access::<T>(rec.payload())?);
        self.reader.advance(&rec);
        Ok(Some(r))
    }

    /// The next message, deserialized. `Ok(None)` if none yet.
    ///
    /// # Errors
    ///
    /// As [`Tailer::read`].
    pub fn try_next(&mut self) -> Result<Option<T>> {
        self.read(|_, a| crate::deserialize::<T>(a))?.transpose()
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// As [`Tailer::read`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<T>> {
        // The common case while messages flow: no clock read, no reference count.
        if let Some(message) = self.try_next()? {
            return Ok(Some(message));
        }
        let journal = self.reader.journal().clone();
        notify::wait_until(
            journal.meta.data_notify(),
            journal.meta.data_waiters(),
            Some(Instant::now() + timeout),
            || self.try_next(),
        )
    }
}
