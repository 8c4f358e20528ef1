//! [`JournalQueue`]: the synchronous handle, with no allocation, lock or system call on its hot
//! path; and [`ReadGuard`], a message read in place.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::options::check_type;
use super::{QueueOptions, StartAt, Tailer};
use crate::journal::{
    Appender, Attempt, Durability, Journal, Policy, Reader, RecordRef, Role, cursor, notify,
};
use crate::message::check_alignment;
use crate::{Archived, Message, QueueError, ReplicationError, Result};

/// The synchronous handle on a queue directory of `T` messages, stored in memory-mapped
/// journal files: the zero-overhead choice for hot loops (no lock, allocation or system call per
/// message once a segment is mapped). It takes `&mut self`; use one per thread
/// ([`JournalQueue::try_clone`] shares the consumer name, [`JournalQueue::consumer`] picks
/// another). For async code, or one handle shared by many tasks, use
/// [`ReplicatedQueueImpl`](crate::ReplicatedQueueImpl), which wraps it.
///
/// ```
/// use repliq::JournalQueue;
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
/// let mut queue = JournalQueue::<Greeting>::new(&path, 1024)?;
/// queue.enqueue(&Greeting { text: "hello".into() })?;
///
/// let mut consumer = JournalQueue::<Greeting>::open(&path)?;
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
    /// The consumer cursor's slot in the meta file and its generation; `None` until the first
    /// read of a [`QueueOptions::producer`] handle.
    slot: Option<(usize, u32)>,
    reader: Option<Reader>,
    /// The epoch this handle first appended in: a later epoch, or a demotion, fences it.
    epoch: Option<u64>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Message> JournalQueue<T> {
    /// Creates the queue at `path` with room for `capacity` unconsumed messages, or opens it if
    /// it exists with that capacity. Uses the [`DEFAULT_CONSUMER`] cursor, registered at once.
    ///
    /// # Errors
    ///
    /// [`QueueError::TypeMismatch`] if the queue holds another message type;
    /// [`QueueError::InvalidConfig`] if it exists with another capacity (the capacity is fixed
    /// at creation: [`JournalQueue::open`] keeps the stored one); as [`QueueOptions::create`].
    ///
    /// [`DEFAULT_CONSUMER`]: super::DEFAULT_CONSUMER
    pub fn new(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        QueueOptions::new()
            .capacity(capacity)
            .require_capacity()
            .create(path)
    }

    /// Opens the existing queue at `path` with the [`DEFAULT_CONSUMER`] cursor.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] ("no queue at DIR yet", kind `NotFound`) if it does not exist;
    /// [`QueueError::TypeMismatch`]; as [`QueueOptions::open`].
    ///
    /// [`DEFAULT_CONSUMER`]: super::DEFAULT_CONSUMER
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        QueueOptions::new().open(path)
    }

    pub(crate) fn from_journal(journal: Arc<Journal>, options: QueueOptions) -> Result<Self> {
        check_type::<T>(&journal)?;
        journal.set_delete_consumed(options.delete_consumed);
        let slot = if options.lazy_consumer {
            None
        } else {
            Some(register_cursor(&journal, &options)?)
        };
        Ok(JournalQueue {
            journal,
            options,
            appender: None,
            slot,
            reader: None,
            epoch: None,
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
        let mut options = self
            .options
            .clone()
            .consumer(name)
            .start_at(StartAt::Earliest);
        options.lazy_consumer = false;
        JournalQueue::from_journal(self.journal.clone(), options)
    }

    /// Deletes consumer cursor `name`; it no longer holds back capacity, and its slot is reused
    /// by a later registration (after a delay of a second). Handles still consuming under the
    /// name register it again, at their [`StartAt`], at their next read. `true` if it existed;
    /// `false` for replica cursors (`replica:…`, kept by replication).
    pub fn remove_consumer(&self, name: &str) -> bool {
        !name.starts_with(cursor::REPLICA_PREFIX) && cursor::remove(&self.journal.meta, name)
    }

    fn appender(&mut self) -> Result<&mut Appender> {
        if self.appender.is_none() {
            let mut appender = Appender::new(self.journal.clone(), self.options.durability)?;
            appender.set_precise_time(self.options.precise_timestamps);
            self.appender = Some(appender);
        }
        match self.appender.as_mut() {
            Some(a) => Ok(a),
            None => Err(QueueError::Other("appender not initialised".into())),
        }
    }

    /// Refuses to write into a replica, and fences a handle whose queue changed epoch or was
    /// demoted since it first wrote. Read on every append: a few loads.
    fn check_policy(&mut self, policy: &Policy) -> Result<()> {
        let replica = policy.role == Role::Replica;
        match self.epoch {
            Some(mine) if mine != policy.epoch || replica => Err(ReplicationError::Fenced {
                path: self.journal.dir.clone(),
                handle_epoch: mine,
                epoch: policy.epoch,
                replica,
            }
            .into()),
            None if replica => Err(ReplicationError::ReadOnlyReplica {
                path: self.journal.dir.clone(),
                primary: None,
                epoch: policy.epoch,
            }
            .into()),
            _ => self.journal.check_lease(),
        }
    }

    /// Appends `message` under the current replication policy and returns its sequence number
    /// and, when the queue replicates synchronously, how long to wait for the acknowledgement.
    pub(crate) fn append(&mut self, message: &T) -> Result<(u64, Option<Duration>)> {
        self.append_with(|slot| crate::message::serialize_into(message, slot))
    }

    /// [`JournalQueue::append`] with a payload writer: `write` fills the (16-byte aligned) slot
    /// and returns the length written.
    fn append_with(
        &mut self,
        write: impl FnMut(&mut [std::mem::MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<(u64, Option<Duration>)> {
        let policy = self.journal.policy();
        self.check_policy(&policy)?;
        let seq = self.appender()?.append(write)?;
        self.epoch = Some(policy.epoch);
        let wait = (policy.required_acks > 0).then_some(policy.ack_timeout);
        Ok((seq, wait))
    }

    /// [`JournalQueue::append`] without a step that may block the thread (see
    /// [`Appender::try_append`]): `Ok(None)` if appending needs one (a segment roll, another
    /// writer's reservation to wait for, a sync); nothing is written then.
    pub(crate) fn try_append(&mut self, message: &T) -> Result<Option<(u64, Option<Duration>)>> {
        let policy = self.journal.policy();
        self.check_policy(&policy)?;
        let attempt = self
            .appender()?
            .try_append(|slot| crate::message::serialize_into(message, slot))?;
        match attempt {
            Attempt::Done(seq) => {
                self.epoch = Some(policy.epoch);
                let wait = (policy.required_acks > 0).then_some(policy.ack_timeout);
                Ok(Some((seq, wait)))
            }
            Attempt::WouldBlock => Ok(None),
        }
    }

    /// [`JournalQueue::append`] of a message this crate serialized itself (`bytes` from
    /// [`to_bytes`](crate::to_bytes) of a `T`), copied into the slot without validating it again.
    pub(crate) fn append_serialized(&mut self, bytes: &[u8]) -> Result<(u64, Option<Duration>)> {
        self.append_with(|slot| copy_into_slot::<T>(bytes, slot))
    }

    /// Prepares the appender now (finding the tail reads the newest segment), so that the first
    /// append does not. Best effort: an error shows again at the first append.
    pub(crate) fn prepare_appender(&mut self) {
        let _ = self.appender();
    }

    /// The epoch this handle first appended in (what fences it), if it appended.
    pub(crate) fn fence_epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Adopts the fencing epoch of another handle of the same application handle (the async
    /// handle's producers share one).
    pub(crate) fn share_fence_epoch(&mut self, epoch: Option<u64>) {
        if epoch.is_some() {
            self.epoch = epoch;
        }
    }

    /// Appends a message that is already serialized, without serializing it again: `bytes` are
    /// exactly what [`to_bytes`](crate::to_bytes) or [`serialize_into`](crate::serialize_into)
    /// produced for a `T` (a message built once and sent many times, or bytes received from
    /// elsewhere), starting at a multiple of [`PAYLOAD_ALIGN`](crate::PAYLOAD_ALIGN). They are
    /// validated as an archived `T` first (so readers that skip validation stay sound), then
    /// copied into the mapped slot. Otherwise as [`JournalQueue::enqueue`].
    ///
    /// # Errors
    ///
    /// [`QueueError::Deserialization`] if `bytes` are misaligned or not a valid archived `T`
    /// (nothing is written); [`QueueError::Serialization`] if they exceed the maximum message
    /// size; as [`JournalQueue::enqueue`].
    pub fn enqueue_bytes(&mut self, bytes: &[u8]) -> Result<u64> {
        crate::access::<T>(bytes)?;
        let (seq, wait) = self.append_with(|slot| copy_into_slot::<T>(bytes, slot))?;
        if let Some(timeout) = wait {
            crate::journal::wait_acked(&self.journal, seq, timeout)?;
        }
        Ok(seq)
    }

    /// Appends `message`, serialized straight into the mapped segment, and returns its sequence
    /// number. The replication policy (role, epoch, synchronous or not) is read from the queue's
    /// meta file on every call, so the handle obeys whatever policy is current.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] if the backlog reached the capacity (nothing is written);
    /// [`QueueError::Serialization`] if it is larger than the maximum message size;
    /// [`QueueError::Corrupt`] / [`QueueError::Io`] for damaged files or failed syncs;
    /// [`QueueError::Replication`] with [`ReplicationError::ReadOnlyReplica`] if the queue is a
    /// replica here, [`ReplicationError::Fenced`] if this handle wrote in an earlier epoch, or
    /// [`ReplicationError::AckTimeout`] if the queue replicates synchronously and the replicas
    /// did not acknowledge the message in time (it *is* written locally and will still be
    /// replicated; it is just not acknowledged).
    pub fn enqueue(&mut self, message: &T) -> Result<u64> {
        let (seq, wait) = self.append(message)?;
        if let Some(timeout) = wait {
            crate::journal::wait_acked(&self.journal, seq, timeout)?;
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
        // The common case, a queue with room: no clock read, no reference count.
        match self.enqueue(message) {
            Err(QueueError::Full { .. }) => {}
            done => return done,
        }
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
        result.ok_or_else(|| QueueError::Full {
            capacity: self.capacity(),
            slowest: cursor::slowest_consumer(&self.journal.meta).unwrap_or_default(),
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
        Ok(next.saturating_sub(self.cursor_value()?))
    }

    /// The consumer cursor (registered now if this is the handle's first read).
    pub(crate) fn cursor_value(&mut self) -> Result<u64> {
        let slot = self.slot()?;
        Ok(self.journal.meta.load_cursor(slot))
    }

    /// The consumer cursor's slot, registered now if this is a [`QueueOptions::producer`]
    /// handle's first read, or again if the cursor was removed since (its slot may then be
    /// reused by another consumer: the generation check keeps this handle out of it).
    #[inline]
    pub(crate) fn slot(&mut self) -> Result<usize> {
        match self.slot {
            Some((slot, generation)) if cursor::holds(&self.journal.meta, slot, generation) => {
                Ok(slot)
            }
            _ => {
                let (slot, generation) = register_cursor(&self.journal, &self.options)?;
                self.slot = Some((slot, generation));
                // The reader may be anywhere: position it at the new cursor.
                self.reader = None;
                Ok(slot)
            }
        }
    }

    /// The record at this handle's cursor, if committed. Positions the reader first.
    fn next_record(&mut self) -> Result<Option<(u64, RecordRef)>> {
        let at = self.cursor_value()?;
        if let Some(reader) = self.reader.as_mut()
            && reader.seq() == at
        {
            // The common case: the reader is where the cursor is.
            match reader.peek() {
                Ok(found) => return Ok(found.map(|rec| (at, rec))),
                Err(e) if self.cursor_value()? == at => return Err(e),
                Err(_) => {}
            }
        }
        self.chase_cursor()
    }

    /// [`JournalQueue::next_record`] when the reader is not where the cursor is (first read,
    /// other consumers of this name moved the cursor), or the cursor moved while it looked.
    /// Other consumers may have moved the cursor past segments retention then deleted: the
    /// reader lands past the cursor's old position, or finds the segment after its position
    /// missing. Neither is an error: chase the cursor. A damaged record at an unmoved cursor is.
    #[cold]
    fn chase_cursor(&mut self) -> Result<Option<(u64, RecordRef)>> {
        loop {
            let at = self.cursor_value()?;
            let reader = match self.reader.as_mut() {
                Some(r) => r,
                None => {
                    let r = Reader::at(self.journal.clone(), at, self.options.verify_checksums)?;
                    self.reader.insert(r)
                }
            };
            let found = match reader.seq() == at || reader.skip_to(at)? {
                true if reader.seq() == at => reader.peek().map(|rec| rec.map(|rec| (at, rec))),
                true => Ok(None),
                false => return Ok(None),
            };
            match found {
                Ok(Some(found)) => return Ok(Some(found)),
                _ if self.cursor_value()? != at => continue,
                other => return other,
            }
        }
    }

    /// Moves the cursor past `seq`. `false` if another handle of the same name did first.
    fn claim(&mut self, seq: u64, rec: &RecordRef) -> bool {
        let Ok(slot) = self.slot() else {
            return false;
        };
        let ok = cursor::claim(self.journal.meta.cursor_next(slot), seq).is_ok();
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
        Ok(self.dequeue_record()?.map(|(_, _, value)| value))
    }

    /// [`JournalQueue::dequeue`] with the message's sequence number and record time (Unix
    /// nanoseconds).
    pub(crate) fn dequeue_record(&mut self) -> Result<Option<(u64, u64, T)>> {
        loop {
            let Some((seq, rec)) = self.next_record()? else {
                return Ok(None);
            };
            let value = crate::deserialize::<T>(crate::access::<T>(rec.payload())?)?;
            if self.claim(seq, &rec) {
                return Ok(Some((seq, rec.time(), value)));
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
        // The common case while messages flow: no clock read, no reference count.
        if let Some(message) = self.dequeue()? {
            return Ok(Some(message));
        }
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

    /// Zero-copy consume of up to `max` messages with **one** cursor move: runs `f` on each
    /// next message in place (validated, with its sequence number), then moves the cursor past
    /// all of them with a single compare-and-swap. Returns how many this handle consumed.
    ///
    /// What the delivery guarantee becomes: still at-least-once, but per batch. The cursor moves
    /// only after `f` has seen the whole batch, so a consumer killed in the middle of a batch sees
    /// all of it again (up to `max` messages redelivered instead of one). With competing handles
    /// of the same consumer name, a handle whose cursor move loses against another's gets none
    /// of the batch (`Ok(0)`), though `f` saw it, as with [`JournalQueue::read`]; with one handle
    /// per name, nothing changes but the count of atomic operations on the shared cursor (and of
    /// wake-ups of producers waiting for room: one per batch).
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::read`]; on an error nothing of the batch is consumed.
    pub fn read_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(u64, &Archived<T>),
    ) -> Result<usize> {
        let Some((from, first)) = self.next_record()? else {
            return Ok(0);
        };
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0);
        };
        let mut rec = first;
        let mut n = 0u64;
        loop {
            f(rec.seq(), crate::access::<T>(rec.payload())?);
            reader.advance(&rec);
            n += 1;
            if n as usize >= max {
                break;
            }
            match reader.peek()? {
                Some(next) => rec = next,
                None => break,
            }
        }
        let slot = self.slot()?;
        if cursor::claim_range(self.journal.meta.cursor_next(slot), from, n).is_err() {
            // Another handle of this name moved the cursor: none of the batch is ours. The
            // reader is repositioned at the cursor by the next call (`next_record`).
            return Ok(0);
        }
        let meta = &self.journal.meta;
        notify::wake(meta.space_notify(), meta.space_waiters());
        Ok(n as usize)
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

    /// Waits (up to `timeout`) until the file the next segment will be written to is prepared
    /// in the background (allocated, its first pre-fault window of 2–32 MiB faulted in), so that
    /// the first `enqueue` after [`QueueOptions::create`] does not wait for it. For
    /// latency-sensitive producers that start writing right after creating a queue; returns at
    /// once if nothing is being prepared. `true` if nothing is left to wait for.
    pub fn warm_up(&self, timeout: Duration) -> bool {
        self.journal.wait_for_spare(timeout)
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

    /// Whether this handle checks records' crc32c when reading.
    pub(crate) fn verify_checksums(&self) -> bool {
        self.options.verify_checksums
    }

    /// Another handle on the same queue that never registers a consumer cursor (it only
    /// appends), sharing this one's options otherwise.
    pub(crate) fn appending_clone(&self) -> Result<Self> {
        let mut options = self.options.clone();
        options.lazy_consumer = true;
        JournalQueue::from_journal(self.journal.clone(), options)
    }

    /// A condition that turns true when a record may have been committed at this handle's
    /// position (for async waits).
    pub(crate) fn data_ready(&self) -> crate::journal::ReadyFn {
        match self.reader.as_ref().map(Reader::probe) {
            Some(probe) => Box::new(move || probe.changed()),
            None => Box::new(|| false),
        }
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

/// Copies serialized message bytes into a reserved slot; returns their length.
fn copy_into_slot<T: Message>(
    bytes: &[u8],
    slot: &mut [std::mem::MaybeUninit<u8>],
) -> Result<usize> {
    if bytes.len() > slot.len() {
        return Err(QueueError::Serialization {
            type_name: T::NAME,
            reason: format!(
                "a {}-byte message does not fit a slot of {} bytes",
                bytes.len(),
                slot.len()
            ),
        });
    }
    for (dst, src) in slot.iter_mut().zip(bytes) {
        dst.write(*src);
    }
    Ok(bytes.len())
}

/// Registers (or finds) the cursor of `options.consumer`, starting at `options.start`.
fn register_cursor(journal: &Arc<Journal>, options: &QueueOptions) -> Result<(usize, u32)> {
    let start = options.start;
    let j = journal.clone();
    cursor::register_gen(&journal.meta, &options.consumer, move || match start {
        StartAt::Earliest => j.earliest_seq(),
        StartAt::Seq(s) => Ok(s),
        StartAt::Latest => Appender::new(j.clone(), Durability::PageCache)?.next_seq(),
    })
}
