//! The typed queue API over the journal.
//!
//! [`JournalQueue<T>`] is a handle on a queue directory: it can enqueue (any number of producers,
//! threads or processes) and consume through a named cursor. Handles with the same consumer name
//! compete for messages (a work queue: each message goes to one of them); handles with different
//! names each see every message (fan-out). A [`Tailer`] reads without a cursor.
//!
//! # Delivery guarantees
//!
//! * A message whose `enqueue` returned `Ok` is in the page cache and survives the producer
//!   being killed (with [`Durability::Sync`], a power loss too).
//! * [`JournalQueue::dequeue`] copies the message out and only then moves the cursor (a
//!   compare-and-swap): among live handles sharing a name each message is returned exactly once;
//!   a consumer killed before the move leaves the message to the next one (at-least-once across
//!   crashes).
//! * [`JournalQueue::read`] and [`ReadGuard::commit`] move the cursor after the caller has
//!   looked at the message in place. If another handle with the same name takes the message
//!   first, the caller has seen a message it does not get (at-least-once); prefer `dequeue` for
//!   work queues whose handlers have side effects.

mod stream;
#[cfg(all(test, not(repliq_loom)))]
mod test;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) use stream::AsyncWaiters;
pub use stream::{MessageStream, Recv};

pub use crate::journal::Durability;
use crate::journal::format::{MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, RECORD_HEADER};
use crate::journal::meta::MetaConfig;
use crate::journal::{Appender, Journal, Reader, RecordRef, cursor, notify};
use crate::message::check_alignment;
use crate::{Archived, Message, QueueError, Result};

/// The consumer name used by [`PersistentQueue::new`] and [`PersistentQueue::open`].
pub const DEFAULT_CONSUMER: &str = "default";

/// A queue of `T`: the seed's basic interface.
pub trait Queue<T: Message> {
    /// Appends `message` and returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] if the backlog reached the capacity; [`QueueError::Serialization`]
    /// if the message does not fit the maximum message size; I/O and corruption errors.
    fn enqueue(&mut self, message: &T) -> Result<u64>;

    /// Takes the next message for this handle's consumer name; `Ok(None)` if there is none.
    ///
    /// # Errors
    ///
    /// [`QueueError::Deserialization`] or [`QueueError::Corrupt`] for bad bytes; I/O errors.
    fn dequeue(&mut self) -> Result<Option<T>>;
}

/// A queue stored in a directory.
pub trait PersistentQueue<T: Message>: Queue<T> + Sized {
    /// Creates the queue at `path` with room for `capacity` unconsumed messages, or opens it if it
    /// exists (keeping its stored capacity). Uses the [`DEFAULT_CONSUMER`] cursor.
    ///
    /// # Errors
    ///
    /// [`QueueError::TypeMismatch`] if the queue holds another message type; as
    /// [`QueueOptions::create`].
    fn new(path: impl AsRef<Path>, capacity: u64) -> Result<Self>;

    /// Opens the existing queue at `path` with the [`DEFAULT_CONSUMER`] cursor.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if it does not exist; [`QueueError::TypeMismatch`]; as
    /// [`QueueOptions::open`].
    fn open(path: impl AsRef<Path>) -> Result<Self>;
}

/// Where a new consumer cursor or a [`Tailer`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// The first message still stored. The default.
    #[default]
    Earliest,
    /// After the last message written so far.
    Latest,
    /// At this sequence number.
    Seq(u64),
}

/// Options for creating or opening a queue. Every setting has a documented default.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    capacity: u64,
    segment_size: u64,
    index_interval: u32,
    max_message_size: u32,
    lease_timeout: Duration,
    durability: Durability,
    consumer: String,
    start: StartAt,
    verify_checksums: bool,
    prefault: bool,
    delete_consumed: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 1 << 20,
            segment_size: 16 << 20,
            index_interval: 64,
            max_message_size: 1 << 20,
            lease_timeout: Duration::from_millis(200),
            durability: Durability::PageCache,
            consumer: DEFAULT_CONSUMER.to_owned(),
            start: StartAt::Earliest,
            verify_checksums: true,
            prefault: false,
            delete_consumed: false,
        }
    }
}

impl QueueOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Backlog bound: messages written but not consumed by the slowest consumer cursor
    /// (default 1 048 576). Stored at creation.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }
    /// Size of each segment file, a multiple of 4096 between 4 KiB and 4 GiB (default 16 MiB).
    /// Stored at creation.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
    /// Every `n`-th record is indexed (default 64). Stored at creation.
    pub fn index_interval(mut self, n: u32) -> Self {
        self.index_interval = n;
        self
    }
    /// Largest serialized message (default 1 MiB, at most what fits a segment). Stored at
    /// creation; a writer reserves this much (or the rest of the segment) per message.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// How long a writer may hold a reservation before others may abandon it (default 200 ms).
    /// This bounds how long a producer killed mid-write blocks the others. A live writer that
    /// was too slow retries transparently. Stored at creation.
    pub fn lease_timeout(mut self, timeout: Duration) -> Self {
        self.lease_timeout = timeout;
        self
    }
    /// How enqueued messages are made durable (default [`Durability::PageCache`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// The consumer cursor name of the handle (default [`DEFAULT_CONSUMER`]); 1 to 40 bytes.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }
    /// Where the consumer cursor starts if it does not exist yet (default [`StartAt::Earliest`]).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }
    /// Check each record's crc32c when reading (default `true`).
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }
    /// Pre-fault segment mappings when they are opened (default `false`): a slower open and
    /// more resident memory for fewer page faults on the hot path.
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Delete segment files that every consumer cursor has passed, automatically (default
    /// `false`: keep everything, e.g. for tailers reading history). Producers of this handle run
    /// it in a background thread once per segment written; [`JournalQueue::purge_consumed`] runs
    /// it on demand. Readers that still map a deleted segment keep reading it; its space is freed
    /// when the last mapping goes away.
    pub fn delete_consumed_segments(mut self, on: bool) -> Self {
        self.delete_consumed = on;
        self
    }

    fn meta_config<T: Message>(&self) -> Result<MetaConfig> {
        if self.capacity == 0 {
            return Err(QueueError::InvalidConfig(
                "capacity must be at least 1".into(),
            ));
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(QueueError::InvalidConfig(format!(
                "segment size {} must be a multiple of 4096 between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.index_interval == 0 {
            return Err(QueueError::InvalidConfig(
                "index interval must be at least 1".into(),
            ));
        }
        let (_, data_start) =
            crate::journal::format::segment_geometry(self.segment_size, self.index_interval);
        let fits = self.segment_size - data_start as u64 - RECORD_HEADER as u64;
        let max_payload = u64::from(self.max_message_size).min(fits) as u32;
        let lease_ms = u32::try_from(self.lease_timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(MetaConfig {
            type_name: T::NAME.to_owned(),
            fingerprint: T::FINGERPRINT,
            segment_size: self.segment_size,
            capacity: self.capacity,
            index_interval: self.index_interval,
            max_payload,
            lease_ms,
            created_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        })
    }

    /// Creates the queue at `path`, or opens it if it exists (then its stored settings win).
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] for bad settings; [`QueueError::TypeMismatch`] if an
    /// existing queue holds another type; [`QueueError::Corrupt`] for damaged files;
    /// [`QueueError::Io`].
    pub fn create<T: Message>(self, path: impl AsRef<Path>) -> Result<JournalQueue<T>> {
        let config = self.meta_config::<T>()?;
        let (journal, _) = Journal::create_or_open(path.as_ref(), &config, self.prefault)?;
        JournalQueue::from_journal(journal, self)
    }

    /// Opens the existing queue at `path`.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::create`]; [`QueueError::Io`] (not found) if there is no queue.
    pub fn open<T: Message>(self, path: impl AsRef<Path>) -> Result<JournalQueue<T>> {
        let journal = Journal::open(path.as_ref(), self.prefault)?;
        JournalQueue::from_journal(journal, self)
    }
}

fn check_type<T: Message>(journal: &Journal) -> Result<()> {
    let config = journal.config();
    if config.fingerprint != T::FINGERPRINT || config.type_name != T::NAME {
        return Err(QueueError::TypeMismatch {
            path: journal.dir.clone(),
            expected_name: T::NAME.to_owned(),
            expected_fingerprint: T::FINGERPRINT,
            found_name: config.type_name.clone(),
            found_fingerprint: config.fingerprint,
        });
    }
    Ok(())
}

/// A handle on a queue directory of `T` messages, stored in memory-mapped journal files.
///
/// Also exported as [`ReplicatedQueueImpl`] (the seed's name). Handles are cheap; use one per
/// thread ([`JournalQueue::try_clone`] shares the consumer name, [`JournalQueue::consumer`]
/// picks another).
///
/// ```
/// use repliq::{PersistentQueue, ReplicatedQueueImpl};
///
/// #[repliq::message]
/// #[derive(Debug, PartialEq)]
/// struct Greeting {
///     text: String,
/// }
///
/// # fn main() -> repliq::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("greetings");
/// let mut queue = ReplicatedQueueImpl::<Greeting>::new(&path, 1024)?;
/// queue.enqueue(&Greeting { text: "hello".into() })?;
///
/// let mut consumer = ReplicatedQueueImpl::<Greeting>::open(&path)?;
/// assert_eq!(consumer.dequeue()?, Some(Greeting { text: "hello".into() }));
/// assert_eq!(consumer.dequeue()?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct JournalQueue<T> {
    journal: Arc<Journal>,
    options: QueueOptions,
    appender: Option<Appender>,
    slot: usize,
    reader: Option<Reader>,
    /// Set when the queue's primary replicates synchronously: `enqueue` waits this long for the
    /// replicas' acknowledgement (read from the queue's replication state with the appender).
    ack_timeout: Option<Duration>,
    /// Replication run by this handle (`configure_replication`).
    replication: Option<crate::replication::Embedded>,
    _type: PhantomData<fn() -> T>,
}

/// The seed's name for the queue implementation.
pub type ReplicatedQueueImpl<T> = JournalQueue<T>;

impl<T: Message> Queue<T> for JournalQueue<T> {
    fn enqueue(&mut self, message: &T) -> Result<u64> {
        JournalQueue::enqueue(self, message)
    }
    fn dequeue(&mut self) -> Result<Option<T>> {
        JournalQueue::dequeue(self)
    }
}

impl<T: Message> crate::replication::ReplicatedQueue<T> for JournalQueue<T> {
    fn configure_replication(
        &mut self,
        primary: &str,
        secondaries: &[&str],
        mode: crate::ReplicationMode,
    ) -> Result<()> {
        // Stop a previous configuration first (it drains), then start the new one.
        self.replication = None;
        self.replication = Some(crate::replication::Embedded::start(
            self.journal.dir.clone(),
            primary,
            secondaries,
            mode,
        )?);
        self.ack_timeout =
            crate::replication::ReplicationState::load(&self.journal.dir)?.ack_timeout();
        Ok(())
    }
}

impl<T: Message> PersistentQueue<T> for JournalQueue<T> {
    fn new(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        QueueOptions::new().capacity(capacity).create(path)
    }
    fn open(path: impl AsRef<Path>) -> Result<Self> {
        QueueOptions::new().open(path)
    }
}

impl<T: Message> JournalQueue<T> {
    fn from_journal(journal: Arc<Journal>, options: QueueOptions) -> Result<Self> {
        check_type::<T>(&journal)?;
        journal.set_delete_consumed(options.delete_consumed);
        let start = options.start;
        let slot = {
            let j = journal.clone();
            cursor::register(&journal.meta, &options.consumer, move || match start {
                StartAt::Earliest => j.earliest_seq(),
                StartAt::Seq(s) => Ok(s),
                StartAt::Latest => Appender::new(j.clone(), Durability::PageCache)?.next_seq(),
            })?
        };
        Ok(JournalQueue {
            journal,
            options,
            appender: None,
            slot,
            reader: None,
            ack_timeout: None,
            replication: None,
            _type: PhantomData,
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.journal.dir
    }

    /// The capacity stored in the queue.
    pub fn capacity(&self) -> u64 {
        self.journal.config().capacity
    }

    /// This handle's consumer name.
    pub fn consumer_name(&self) -> &str {
        &self.options.consumer
    }

    /// Another handle on the same queue with the same consumer name (they compete).
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::open`].
    pub fn try_clone(&self) -> Result<Self> {
        JournalQueue::from_journal(self.journal.clone(), self.options.clone())
    }

    /// Another handle on the same queue consuming as `name` (created at [`StartAt::Earliest`]
    /// if new): different names each see every message.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] for a bad name or when all consumer slots are used.
    pub fn consumer(&self, name: &str) -> Result<Self> {
        let options = self
            .options
            .clone()
            .consumer(name)
            .start_at(StartAt::Earliest);
        JournalQueue::from_journal(self.journal.clone(), options)
    }

    /// Deletes consumer cursor `name`; it no longer holds back capacity. `true` if it existed.
    pub fn remove_consumer(&self, name: &str) -> bool {
        cursor::remove(&self.journal.meta, name)
    }

    fn appender(&mut self) -> Result<&mut Appender> {
        if self.appender.is_none() {
            // A replica is written by replication only; its producers must go to the primary.
            let state = crate::replication::ReplicationState::load(&self.journal.dir)?;
            state.check_writable(&self.journal.dir)?;
            self.ack_timeout = state.ack_timeout();
            self.appender = Some(Appender::new(
                self.journal.clone(),
                self.options.durability,
            )?);
        }
        match self.appender.as_mut() {
            Some(a) => Ok(a),
            None => Err(QueueError::Other("appender not initialised".into())),
        }
    }

    /// Appends `message`, serialized straight into the mapped segment, and returns its sequence
    /// number.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] if the backlog reached the capacity (nothing is written);
    /// [`QueueError::Serialization`] if it is larger than the maximum message size;
    /// [`QueueError::Corrupt`] / [`QueueError::Io`] for damaged files or failed syncs;
    /// [`QueueError::Replication`] if the queue is a replica (read-only here), or if its primary
    /// replicates synchronously and the replicas did not acknowledge the message in time (it
    /// *is* written locally and will still be replicated; it is just not acknowledged).
    pub fn enqueue(&mut self, message: &T) -> Result<u64> {
        let seq = self
            .appender()?
            .append(|slot| crate::message::serialize_into(message, slot))?;
        if let Some(timeout) = self.ack_timeout {
            crate::replication::wait_acked(&self.journal, seq, timeout)?;
        }
        Ok(seq)
    }

    /// Like [`JournalQueue::enqueue`], but waits while the queue is full, up to `timeout`
    /// (`None`: forever). Sleeps on a futex that consumers signal.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] if there is still no room at the deadline; as `enqueue`.
    pub fn enqueue_wait(&mut self, message: &T, timeout: Option<Duration>) -> Result<u64> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let journal = self.journal.clone();
        let result = notify::wait_until(
            journal.meta.space_notify(),
            journal.meta.space_waiters(),
            deadline,
            || match self.enqueue(message) {
                Ok(seq) => Ok(Some(seq)),
                Err(QueueError::Full { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        )?;
        result.ok_or(QueueError::Full {
            capacity: self.capacity(),
        })
    }

    /// Syncs everything this handle wrote to disk (`msync`), whatever the durability mode.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if the sync fails.
    pub fn flush(&mut self) -> Result<()> {
        match self.appender.as_mut() {
            Some(a) => a.flush(),
            None => self.journal.meta.flush(),
        }
    }

    /// Messages written but not yet consumed by this handle's consumer.
    ///
    /// # Errors
    ///
    /// I/O and corruption errors while finding the tail.
    pub fn backlog(&mut self) -> Result<u64> {
        let next = self.appender()?.next_seq()?;
        Ok(next.saturating_sub(self.cursor_value()))
    }

    fn cursor_value(&self) -> u64 {
        self.journal.meta.load_cursor(self.slot)
    }

    /// The record at this handle's cursor, if committed. Positions the reader first.
    fn next_record(&mut self) -> Result<Option<(u64, RecordRef)>> {
        let at = self.cursor_value();
        let reader = match self.reader.as_mut() {
            Some(r) => r,
            None => {
                let r = Reader::at(self.journal.clone(), at, self.options.verify_checksums)?;
                self.reader.insert(r)
            }
        };
        if reader.seq() != at && !reader.skip_to(at)? {
            return Ok(None);
        }
        if reader.seq() != at {
            return Ok(None);
        }
        Ok(reader.peek()?.map(|rec| (at, rec)))
    }

    /// Moves the cursor past `seq`. `false` if another handle of the same name did first.
    fn claim(&mut self, seq: u64, rec: &RecordRef) -> bool {
        let ok = cursor::claim(self.journal.meta.cursor_next(self.slot), seq).is_ok();
        if ok {
            if let Some(r) = self.reader.as_mut() {
                r.advance(rec);
            }
            let meta = &self.journal.meta;
            notify::wake(meta.space_notify(), meta.space_waiters());
        }
        ok
    }

    /// Takes the next message for this handle's consumer name; `Ok(None)` if there is none.
    /// The message is copied out (deserialized) before the cursor moves.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] for a damaged record (naming file and offset),
    /// [`QueueError::Deserialization`] for bytes that are not a valid `T`.
    pub fn dequeue(&mut self) -> Result<Option<T>> {
        loop {
            let Some((seq, rec)) = self.next_record()? else {
                return Ok(None);
            };
            let value = crate::deserialize::<T>(crate::access::<T>(rec.payload())?)?;
            if self.claim(seq, &rec) {
                return Ok(Some(value));
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the next message: spins briefly, then sleeps
    /// on a futex that producers in any process wake.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::dequeue`]. A timeout is `Ok(None)`.
    pub fn dequeue_wait(&mut self, timeout: Option<Duration>) -> Result<Option<T>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let journal = self.journal.clone();
        notify::wait_until(
            journal.meta.data_notify(),
            journal.meta.data_waiters(),
            deadline,
            || self.dequeue(),
        )
    }

    /// Zero-copy consume: runs `f` on the next message in place (validated) and then moves the
    /// cursor. `Ok(None)` if there is no message. See the module docs for the guarantee.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::dequeue`].
    pub fn read<R>(&mut self, mut f: impl FnMut(&Archived<T>) -> R) -> Result<Option<R>> {
        loop {
            let Some((seq, rec)) = self.next_record()? else {
                return Ok(None);
            };
            let r = f(crate::access::<T>(rec.payload())?);
            if self.claim(seq, &rec) {
                return Ok(Some(r));
            }
            // Another handle with the same name took it first: `f` saw a message this handle
            // does not get. Go on with the next one.
        }
    }

    /// Unchecked zero-copy consume: runs `f` on the next message's raw bytes (16-byte aligned,
    /// exactly the archived message) and then moves the cursor. Use it with
    /// [`access_unchecked`](crate::access_unchecked) to skip validation.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] for damaged records.
    pub fn read_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let Some((seq, rec)) = self.next_record()? else {
            return Ok(None);
        };
        check_alignment::<T>(rec.payload())?;
        let r = f(rec.payload());
        if self.claim(seq, &rec) {
            Ok(Some(r))
        } else {
            Ok(None)
        }
    }

    /// The next message in place, without consuming it: the guard derefs to `&Archived<T>`;
    /// [`ReadGuard::commit`] consumes it, dropping the guard leaves it in the queue.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::dequeue`].
    pub fn peek(&mut self) -> Result<Option<ReadGuard<'_, T>>> {
        let Some((seq, rec)) = self.next_record()? else {
            return Ok(None);
        };
        crate::access::<T>(rec.payload())?;
        Ok(Some(ReadGuard {
            queue: self,
            seq,
            rec,
        }))
    }

    /// A reader of this queue that is not a consumer (holds nothing back).
    ///
    /// # Errors
    ///
    /// I/O and corruption errors.
    pub fn tailer(&self, start: StartAt) -> Result<Tailer<T>> {
        Tailer::new(self.journal.clone(), start, self.options.verify_checksums)
    }

    /// Deletes whole segment files that every consumer cursor has passed. Returns how many.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if a file cannot be deleted.
    pub fn purge_consumed(&self) -> Result<usize> {
        self.journal.purge_consumed()
    }

    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub(crate) fn reader_probe(&self) -> Option<crate::journal::Probe> {
        self.reader.as_ref().map(Reader::probe)
    }
}

/// A message in place, returned by [`JournalQueue::peek`].
#[derive(Debug)]
pub struct ReadGuard<'a, T: Message> {
    queue: &'a mut JournalQueue<T>,
    seq: u64,
    rec: RecordRef,
}

impl<T: Message> ReadGuard<'_, T> {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The archived message, straight from the mapping.
    pub fn get(&self) -> &Archived<T> {
        // Validated when the guard was made; the committed bytes never change. Validate again
        // rather than trusting that, since it is cheap and keeps this path free of `unsafe`.
        match crate::access::<T>(self.rec.payload()) {
            Ok(a) => a,
            Err(_) => unreachable!("bytes validated at peek and never written again"),
        }
    }
    /// Consumes the message (moves the cursor). `false` if another handle with the same
    /// consumer name took it first.
    pub fn commit(self) -> bool {
        self.queue.claim(self.seq, &self.rec)
    }
}

impl<T: Message> std::ops::Deref for ReadGuard<'_, T> {
    type Target = Archived<T>;
    fn deref(&self) -> &Archived<T> {
        self.get()
    }
}

/// Reads a queue from a position without a cursor: from the start, the end, or a sequence.
#[derive(Debug)]
pub struct Tailer<T> {
    reader: Reader,
    _type: PhantomData<fn() -> T>,
}

impl<T: Message> Tailer<T> {
    fn new(journal: Arc<Journal>, start: StartAt, verify: bool) -> Result<Self> {
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
    /// As [`QueueOptions::open`].
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
    /// [`QueueError::Corrupt`], [`QueueError::Deserialization`].
    pub fn read<R>(&mut self, f: impl FnOnce(u64, &Archived<T>) -> R) -> Result<Option<R>> {
        let Some(rec) = self.reader.peek()? else {
            return Ok(None);
        };
        let r = f(rec.seq, crate::access::<T>(rec.payload())?);
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
        let journal = self.reader.journal().clone();
        notify::wait_until(
            journal.meta.data_notify(),
            journal.meta.data_waiters(),
            Some(Instant::now() + timeout),
            || self.try_next(),
        )
    }
}
