//! At-least-once receive on the async handle: [`Delivery`], a message handed out with its
//! sequence number and time that moves the consumer cursor only when acknowledged.
//!
//! The handle keeps, in this process, the deliveries it handed out and not yet committed
//! (`Inflight`): the next sequence number to hand out, and for each outstanding one whether it
//! is out, acknowledged, or returned (dropped without acknowledgement: handed out again first).
//! The cursor in the meta file (shared with every process consuming under the same name) moves
//! only over the contiguous prefix of acknowledged deliveries, with one compare-and-swap per
//! acknowledgement that completes a prefix. So after a crash the consumer name starts again at
//! its first unacknowledged message: every message is delivered at least once, and a message
//! delivered and acknowledged is never delivered again to this name.
//!
//! Competing handles of the same name in *other* processes do not see this process's
//! in-flight set: while a delivery is outstanding here they may be handed the same message; the
//! acknowledgement that moves the cursor first wins, and the other's `ack` returns `false` (as
//! [`ReadGuard::commit`](super::ReadGuard::commit) does on the synchronous handle).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{JournalQueue, ReplicatedQueueImpl};
use crate::journal::{Reader, ReadyFn, cursor, notify};
use crate::{Message, QueueError, Result};

/// The state of a delivery handed out and not yet committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Handed out; the application has it.
    Out,
    /// Acknowledged; the cursor moves past it once every earlier delivery is acknowledged.
    Acked,
    /// Dropped without acknowledgement: the next receive hands it out again.
    Returned,
}

/// A message taken from the queue, with its sequence number and record time (Unix ns).
pub(crate) struct Taken<T> {
    pub seq: u64,
    pub time: u64,
    pub value: T,
}

/// The consumer side of an async handle: the synchronous handle that owns the cursor, and the
/// deliveries handed out by this process and not committed yet.
#[derive(Debug)]
pub(crate) struct Consumer<T> {
    pub queue: JournalQueue<T>,
    /// The next sequence number to hand out as a delivery (at least the cursor).
    next: u64,
    pending: BTreeMap<u64, Held>,
    /// Positioned at `next` (reads ahead of the cursor while deliveries are outstanding).
    reader: Option<Reader>,
}

impl<T: Message> Consumer<T> {
    pub(crate) fn new(queue: JournalQueue<T>) -> Self {
        Consumer {
            queue,
            next: 0,
            pending: BTreeMap::new(),
            reader: None,
        }
    }

    /// Forgets deliveries the cursor has passed (committed here, or by a competing process).
    fn forget_below(&mut self, cursor: u64) {
        if self
            .pending
            .first_key_value()
            .is_some_and(|(&s, _)| s < cursor)
        {
            self.pending = self.pending.split_off(&cursor);
        }
        self.next = self.next.max(cursor);
    }

    /// Takes the next message. With `ack_now` the message is consumed at once (the cursor moves
    /// past it before this returns, or, while earlier deliveries of this handle are outstanding,
    /// as soon as they are acknowledged); otherwise it is a delivery that moves nothing until
    /// [`Consumer::ack`].
    pub(crate) fn take(&mut self, ack_now: bool) -> Result<Option<Taken<T>>> {
        if ack_now && self.pending.is_empty() {
            // Nothing outstanding: the synchronous handle's path (copy out, then CAS).
            return Ok(self
                .queue
                .dequeue_record()?
                .map(|(seq, time, value)| Taken { seq, time, value }));
        }
        let cursor = self.queue.cursor_value()?;
        self.forget_below(cursor);
        let returned = self
            .pending
            .iter()
            .find(|(_, h)| **h == Held::Returned)
            .map(|(&s, _)| s);
        let taken = match returned {
            Some(seq) => match self.read_at(seq)? {
                Some(t) => Some(t),
                None => {
                    return Err(QueueError::Other(format!(
                        "message {seq} of {}, handed out before, is no longer readable",
                        self.queue.path().display()
                    )));
                }
            },
            None => self.read_next()?,
        };
        let Some(taken) = taken else {
            return Ok(None);
        };
        self.pending.insert(taken.seq, Held::Out);
        if ack_now {
            self.ack(taken.seq);
        }
        Ok(Some(taken))
    }

    /// Reads the record at `self.next` and moves `next` past it.
    fn read_next(&mut self) -> Result<Option<Taken<T>>> {
        let at = self.next;
        let reader = match self.reader.as_mut() {
            Some(r) if r.seq() == at => r,
            _ => {
                let journal = self.queue.journal().clone();
                let r = Reader::at(journal, at, self.queue.verify_checksums())?;
                self.reader.insert(r)
            }
        };
        let Some(rec) = reader.peek()? else {
            return Ok(None);
        };
        let value = crate::deserialize::<T>(crate::access::<T>(rec.payload())?)?;
        reader.advance(&rec);
        // Past `at` only if `at` was deleted by retention, which a cursor at or before it
        // forbids; go on from where the journal is.
        self.next = rec.seq() + 1;
        Ok(Some(Taken {
            seq: rec.seq(),
            time: rec.time(),
            value,
        }))
    }

    /// Reads the record at `seq` (an outstanding delivery handed out again).
    fn read_at(&mut self, seq: u64) -> Result<Option<Taken<T>>> {
        let journal = self.queue.journal().clone();
        let mut reader = Reader::at(journal, seq, self.queue.verify_checksums())?;
        match reader.peek()? {
            Some(rec) if rec.seq() == seq => {
                let value = crate::deserialize::<T>(crate::access::<T>(rec.payload())?)?;
                Ok(Some(Taken {
                    seq,
                    time: rec.time(),
                    value,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Acknowledges delivery `seq` and moves the cursor over every acknowledged delivery it
    /// now reaches. `false` if `seq` is not outstanding here (acknowledged before, or a
    /// competing handle of the same name in another process consumed it first).
    pub(crate) fn ack(&mut self, seq: u64) -> bool {
        match self.pending.get_mut(&seq) {
            Some(h @ (Held::Out | Held::Returned)) => *h = Held::Acked,
            _ => return false,
        }
        let Ok(slot) = self.queue.slot() else {
            return false;
        };
        let journal = self.queue.journal().clone();
        let word = journal.meta.cursor_next(slot);
        loop {
            let at = word.load(Ordering::Acquire);
            self.forget_below(at);
            let mut n = 0u64;
            for (&s, h) in self.pending.range(at..) {
                if s != at + n || *h != Held::Acked {
                    break;
                }
                n += 1;
            }
            if n == 0 {
                return at <= seq;
            }
            if cursor::claim_range(word, at, n).is_ok() {
                self.forget_below(at + n);
                let meta = &journal.meta;
                notify::wake(meta.space_notify(), meta.space_waiters());
                return true;
            }
        }
    }

    /// Returns delivery `seq` unacknowledged: the next receive hands it out again.
    pub(crate) fn release(&mut self, seq: u64) {
        if let Some(h @ Held::Out) = self.pending.get_mut(&seq) {
            *h = Held::Returned;
        }
    }

    /// A quick test the waiter thread runs for "a message may be there now".
    pub(crate) fn data_ready(&self, ack_now: bool) -> ReadyFn {
        if ack_now && self.pending.is_empty() {
            return self.queue.data_ready();
        }
        if self.pending.values().any(|h| *h == Held::Returned) {
            return Box::new(|| true);
        }
        match self.reader.as_ref().map(Reader::probe) {
            Some(probe) => Box::new(move || probe.changed()),
            None => Box::new(|| false),
        }
    }
}

/// A message received with [`ReplicatedQueueImpl::recv_delivery`]: it stays the consumer's
/// until [`Delivery::ack`]. Dropped (or [`Delivery::nack`]ed) without acknowledgement, it is
/// handed out again by this handle's next receive; if the process dies first, the next process
/// consuming under the name receives it (at-least-once).
///
/// The cursor moves over acknowledged deliveries in sequence order: a delivery left
/// unacknowledged holds back the cursor (and the queue's capacity) for every later one.
pub struct Delivery<T: Message + Send + Sync + 'static> {
    value: T,
    ack: Ack<T>,
}

/// The acknowledgement of a [`Delivery`] whose message was taken out with
/// [`Delivery::into_parts`]. Dropping it unacknowledged returns the message to the queue.
pub struct Ack<T: Message + Send + Sync + 'static> {
    queue: Option<ReplicatedQueueImpl<T>>,
    seq: u64,
    time: u64,
}

impl<T: Message + Send + Sync + 'static> Delivery<T> {
    pub(crate) fn new(queue: ReplicatedQueueImpl<T>, taken: Taken<T>) -> Self {
        Delivery {
            value: taken.value,
            ack: Ack {
                queue: Some(queue),
                seq: taken.seq,
                time: taken.time,
            },
        }
    }

    /// The message.
    pub fn message(&self) -> &T {
        &self.value
    }

    /// The message's sequence number: dense, unique in the queue, the same on every replica (a
    /// key for deduplication downstream).
    pub fn seq(&self) -> u64 {
        self.ack.seq
    }

    /// When the producer wrote it (wall clock of the producer's host; see
    /// [`QueueOptions::precise_timestamps`](super::QueueOptions::precise_timestamps)).
    pub fn time(&self) -> SystemTime {
        self.ack.time()
    }

    /// [`Delivery::time`] in nanoseconds since the Unix epoch, as stored.
    pub fn time_unix_nanos(&self) -> u64 {
        self.ack.time
    }

    /// Consumes the message: the cursor moves past it (once every earlier delivery of this
    /// handle is acknowledged too). `false` if it was consumed already: by a competing handle
    /// of the same consumer name in another process that moved the cursor first.
    pub fn ack(self) -> bool {
        let Delivery { ack, .. } = self;
        ack.ack()
    }

    /// Gives the message back unacknowledged (what dropping the delivery does): this handle's
    /// next receive hands it out again.
    pub fn nack(self) {}

    /// The message and its acknowledgement, separately (e.g. to move the message into a call
    /// and acknowledge after it returned).
    pub fn into_parts(self) -> (T, Ack<T>) {
        (self.value, self.ack)
    }
}

impl<T: Message + Send + Sync + 'static> Ack<T> {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When the producer wrote the message.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time)
    }

    /// As [`Delivery::ack`].
    pub fn ack(mut self) -> bool {
        match self.queue.take() {
            Some(q) => q.ack_delivery(self.seq),
            None => false,
        }
    }
}

impl<T: Message + Send + Sync + 'static> Drop for Ack<T> {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.release_delivery(self.seq);
        }
    }
}

impl<T: Message + Send + Sync + 'static> std::ops::Deref for Delivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Message + Send + Sync + fmt::Debug + 'static> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.ack.seq)
            .field("time_unix_nanos", &self.ack.time)
            .field("message", &self.value)
            .finish()
    }
}

impl<T: Message + Send + Sync + 'static> fmt::Debug for Ack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("seq", &self.seq)
            .field("pending", &self.queue.is_some())
            .finish()
    }
}
