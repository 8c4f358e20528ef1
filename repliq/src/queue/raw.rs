//! [`RawQueue`]: an untyped handle with a durable consumer cursor, for bridges and tools that
//! carry no Rust type (the connectors of `repliq-connect`): records are bytes, the message type
//! is the queue's stored [`Schema`](crate::descriptor::Schema).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DEFAULT_CONSUMER, StartAt};
use crate::descriptor::Schema;
use crate::journal::{Appender, Durability, Journal, Reader, Role, cursor, notify};
use crate::{QueueError, ReplicationError, Result};

/// An untyped handle on an existing queue: reads records in place through a named, durable
/// consumer cursor that moves only when the caller commits, and appends records that are
/// validated against the queue's schema (`schema.json`).
///
/// Reading is two-step so that a bridge can acknowledge only what the other side confirmed:
/// [`RawQueue::read_batch`] hands out records after the handle's *read position* (which starts
/// at the cursor) without moving the cursor; [`RawQueue::commit`] moves the cursor;
/// [`RawQueue::rewind`] puts the read position back to the cursor (to redeliver after a failed
/// write). A process killed between reading and committing reads the same records again
/// (at-least-once).
#[derive(Debug)]
pub struct RawQueue {
    journal: Arc<Journal>,
    schema: Option<Schema>,
    consumer: String,
    start: StartAt,
    /// The cursor's slot and the generation it was registered in.
    slot: Option<(usize, u32)>,
    reader: Option<Reader>,
    appender: Option<Appender>,
    durability: Durability,
    epoch: Option<u64>,
}

impl RawQueue {
    /// Opens the existing queue at `path`. Reads (if any) go through consumer cursor
    /// `consumer`, registered at `start` on first use if it does not exist.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if the queue does not exist; [`QueueError::Corrupt`] for a damaged
    /// meta file or `schema.json`; [`QueueError::InvalidConfig`] for a bad consumer name.
    pub fn open(path: impl AsRef<Path>, consumer: &str, start: StartAt) -> Result<RawQueue> {
        cursor::check_name(consumer)?;
        let path = path.as_ref();
        let journal = Journal::open(path, false)?;
        let schema = crate::journal::read_schema(path)?;
        Ok(RawQueue {
            journal,
            schema,
            consumer: consumer.to_owned(),
            start,
            slot: None,
            reader: None,
            appender: None,
            durability: Durability::PageCache,
            epoch: None,
        })
    }

    /// Opens the queue at `path` for appending only (it registers no consumer cursor).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::open`].
    pub fn producer(path: impl AsRef<Path>) -> Result<RawQueue> {
        RawQueue::open(path, DEFAULT_CONSUMER, StartAt::Earliest)
    }

    /// Sets how appends are made durable (default [`Durability::PageCache`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> RawQueue {
        self.durability = durability;
        self
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.journal.dir
    }

    /// The queue's message type, as stored in `schema.json` (`None` for a queue that has none:
    /// created before schema files existed and never opened by a typed handle since).
    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_ref()
    }

    /// The message type name stored in the meta file.
    pub fn type_name(&self) -> &str {
        &self.journal.config().type_name
    }

    /// The consumer cursor's name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The cursor's slot, registered now on first use, or again if the cursor was removed
    /// since (its slot may then be reused by another consumer: the generation check keeps this
    /// handle out of it).
    fn slot(&mut self) -> Result<usize> {
        if let Some((slot, generation)) = self.slot
            && cursor::holds(&self.journal.meta, slot, generation)
        {
            return Ok(slot);
        }
        let start = self.start;
        let j = self.journal.clone();
        let (slot, generation) =
            cursor::register_gen(&self.journal.meta, &self.consumer, move || match start {
                StartAt::Earliest => j.earliest_seq(),
                StartAt::Seq(s) => Ok(s),
                StartAt::Latest => Appender::new(j.clone(), Durability::PageCache)?.next_seq(),
            })?;
        self.slot = Some((slot, generation));
        // The reader may be anywhere: position it at the (new) cursor.
        self.reader = None;
        Ok(slot)
    }

    /// The consumer cursor: the sequence of the first record not yet committed.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] when all consumer slots are used.
    pub fn cursor(&mut self) -> Result<u64> {
        let slot = self.slot()?;
        Ok(self.journal.meta.load_cursor(slot))
    }

    /// Records written but not yet committed by this consumer.
    ///
    /// # Errors
    ///
    /// I/O and corruption errors while finding the tail.
    pub fn backlog(&mut self) -> Result<u64> {
        let at = self.cursor()?;
        let next = Appender::new(self.journal.clone(), Durability::PageCache)?.next_seq()?;
        Ok(next.saturating_sub(at))
    }

    /// Runs `f` on up to `max` records after the read position, in place (the payload is the
    /// archived message, 16-byte aligned), and moves the read position past them. The cursor
    /// does not move. Returns how many records `f` saw.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] for a damaged record.
    pub fn read_batch(&mut self, max: usize, mut f: impl FnMut(u64, &[u8])) -> Result<usize> {
        self.read_batch_while(max, |seq, payload| {
            f(seq, payload);
            true
        })
    }

    /// [`RawQueue::read_batch`] that stops before the first record for which `f` returns
    /// `false`: that record is not passed over (the next read starts with it again). For a
    /// reader with a budget (bytes, say) that a record may not fit.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] for a damaged record.
    pub fn read_batch_while(
        &mut self,
        max: usize,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<usize> {
        let at = self.cursor()?;
        let reader = match self.reader.as_mut() {
            Some(r) if r.seq() >= at => r,
            _ => {
                let r = Reader::at(self.journal.clone(), at, true)?;
                self.reader.insert(r)
            }
        };
        let mut n = 0;
        while n < max {
            let Some(rec) = reader.peek()? else { break };
            if !f(rec.seq(), rec.payload()) {
                break;
            }
            reader.advance(&rec);
            n += 1;
        }
        Ok(n)
    }

    /// Runs `f` on record `seq` in place (the payload is the archived message, 16-byte
    /// aligned), for a consumer that delivers a record again. Neither the read position nor the
    /// cursor moves. `false` (and `f` not run) if the queue holds no record `seq`: not written
    /// yet, or removed by retention.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] for a damaged record.
    pub fn read_at(&mut self, seq: u64, f: impl FnOnce(&[u8])) -> Result<bool> {
        let mut reader = Reader::at(self.journal.clone(), seq, true)?;
        match reader.peek()? {
            Some(rec) if rec.seq() == seq => {
                f(rec.payload());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Waits up to `timeout` until a record is committed after the read position (spins, then
    /// sleeps on the queue's futex, which producers in any process wake). `true` if one is.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::read_batch`].
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let at = self.cursor()?;
        if self.reader.as_ref().is_none_or(|r| r.seq() < at) {
            self.reader = Some(Reader::at(self.journal.clone(), at, true)?);
        }
        let journal = self.journal.clone();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        let found = notify::wait_until(
            journal.meta.data_notify(),
            journal.meta.data_waiters(),
            Some(Instant::now() + timeout),
            || Ok(reader.peek()?.map(|_| ())),
        )?;
        Ok(found.is_some())
    }

    /// The read position: the sequence of the next record [`RawQueue::read_batch`] returns.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::cursor`].
    pub fn read_position(&mut self) -> Result<u64> {
        match self.reader.as_ref() {
            Some(r) => Ok(r.seq()),
            None => self.cursor(),
        }
    }

    /// Moves the consumer cursor to `next` (the sequence after the last record done with),
    /// which frees their room in the queue. Moving it backwards or not at all is a no-op.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] if `next` lies past the read position (records nobody
    /// read), or if another handle of the same consumer name moved the cursor meanwhile (names
    /// used by a bridge must not be shared).
    pub fn commit(&mut self, next: u64) -> Result<()> {
        let slot = self.slot()?;
        let read = self.read_position()?;
        if next > read {
            return Err(QueueError::InvalidConfig(format!(
                "consumer {:?} of {}: cannot commit up to {next}, past the read position {read}",
                self.consumer,
                self.journal.dir.display()
            )));
        }
        let word = self.journal.meta.cursor_next(slot);
        let from = self.journal.meta.load_cursor(slot);
        if next <= from {
            return Ok(());
        }
        if let Err(now) = cursor::claim_range(word, from, next - from) {
            return Err(QueueError::InvalidConfig(format!(
                "consumer {:?} of {}: the cursor moved from {from} to {now} under this handle \
                 (another handle uses the same name)",
                self.consumer,
                self.journal.dir.display()
            )));
        }
        let meta = &self.journal.meta;
        notify::wake(meta.space_notify(), meta.space_waiters());
        Ok(())
    }

    /// Puts the read position back to the cursor: the records read but not committed are read
    /// again.
    pub fn rewind(&mut self) {
        self.reader = None;
    }

    /// Appends `payload`, an archived message of the queue's type, and returns its sequence
    /// number. The bytes are validated against the queue's schema first (so typed readers that
    /// skip validation stay sound). Obeys the replication policy like
    /// [`JournalQueue::enqueue`](crate::JournalQueue::enqueue): refused on a replica, fenced
    /// after a change of epoch, and on a synchronously replicated queue it returns once the
    /// replicas acknowledged.
    ///
    /// # Errors
    ///
    /// [`QueueError::Deserialization`] if the bytes are not a valid archived value of the
    /// schema's type (nothing is written); [`QueueError::InvalidConfig`] if the queue has no
    /// schema; as [`JournalQueue::enqueue`](crate::JournalQueue::enqueue) otherwise.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.validate(payload)?;
        let policy = self.check_writable()?;
        let seq = self.append_unwaited(payload)?;
        self.epoch = Some(policy.epoch);
        if policy.required_acks > 0 {
            crate::journal::wait_acked(&self.journal, seq, policy.ack_timeout)?;
        }
        Ok(seq)
    }

    /// Appends every payload of `payloads` as [`RawQueue::append`] does, and returns the
    /// sequence numbers of the first and last (other producers' records may lie between them).
    /// All are validated before any is written (an invalid one writes nothing; the error's
    /// [`QueueError::Deserialization`] names it by its index). On a synchronously replicated
    /// queue it returns once the replicas acknowledged the last one (one wait for the batch).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::append`]; [`QueueError::InvalidConfig`] for an empty batch.
    pub fn append_batch(&mut self, payloads: &[&[u8]]) -> Result<(u64, u64)> {
        if payloads.is_empty() {
            return Err(QueueError::InvalidConfig("an empty batch".into()));
        }
        for (i, payload) in payloads.iter().enumerate() {
            self.validate(payload).map_err(|e| match e {
                QueueError::Deserialization {
                    type_name,
                    len,
                    reason,
                } => QueueError::Deserialization {
                    type_name,
                    len,
                    reason: format!("record {i} of the batch: {reason}"),
                },
                other => other,
            })?;
        }
        let policy = self.check_writable()?;
        let mut first = None;
        let mut last = 0;
        for payload in payloads {
            last = self.append_unwaited(payload)?;
            first.get_or_insert(last);
            self.epoch = Some(policy.epoch);
        }
        if policy.required_acks > 0 {
            crate::journal::wait_acked(&self.journal, last, policy.ack_timeout)?;
        }
        Ok((first.unwrap_or(last), last))
    }

    /// Waits until the replicas acknowledged record `seq` if the queue replicates
    /// synchronously now (at once otherwise): for a record appended earlier whose wait timed out.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::AckTimeout`] after the queue's acknowledgement timeout.
    pub fn wait_replicated(&self, seq: u64) -> Result<()> {
        let policy = self.journal.policy();
        if policy.required_acks > 0 {
            crate::journal::wait_acked(&self.journal, seq, policy.ack_timeout)?;
        }
        Ok(())
    }

    /// The queue's message type fingerprint, as stored in the meta file.
    pub fn fingerprint(&self) -> u64 {
        self.journal.config().fingerprint
    }

    /// The sequence number the next appended record will get (if no other producer appends
    /// first).
    ///
    /// # Errors
    ///
    /// I/O and corruption errors while finding the tail.
    pub fn next_seq(&mut self) -> Result<u64> {
        // The handle's own appender: finding the tail from where it last wrote is a short walk
        // (a new appender checks the whole segment chain first).
        if self.appender.is_none() {
            self.appender = Some(Appender::new(self.journal.clone(), self.durability)?);
        }
        match self.appender.as_mut() {
            Some(a) => a.next_seq(),
            None => Err(QueueError::Other("appender not initialised".into())),
        }
    }

    /// Whether this node is the queue's primary now (producers may write).
    pub fn is_primary(&self) -> bool {
        self.journal.policy().role == Role::Primary
    }

    /// Checks `payload` against the queue's schema (from an aligned copy).
    fn validate(&self, payload: &[u8]) -> Result<()> {
        let Some(schema) = self.schema.as_ref() else {
            return Err(QueueError::InvalidConfig(format!(
                "queue {} has no schema.json: untyped appends cannot be validated",
                self.journal.dir.display()
            )));
        };
        // Validate from an aligned copy (the caller's buffer may be anywhere).
        let mut aligned = crate::AlignedBytes::new();
        aligned.extend_from_slice(payload);
        if let Err(e) = crate::descriptor::validate(&schema.root, &aligned) {
            return Err(QueueError::Deserialization {
                type_name: "(the queue's schema type)",
                len: payload.len(),
                reason: format!("not a valid archived `{}`: {e}", schema.name),
            });
        }
        Ok(())
    }

    /// The policy to append under, or the error of a replica / a fenced handle.
    fn check_writable(&self) -> Result<crate::journal::Policy> {
        let policy = self.journal.policy();
        let replica = policy.role == Role::Replica;
        match self.epoch {
            Some(mine) if mine != policy.epoch || replica => {
                return Err(ReplicationError::Fenced {
                    path: self.journal.dir.clone(),
                    handle_epoch: mine,
                    epoch: policy.epoch,
                    replica,
                }
                .into());
            }
            None if replica => {
                return Err(ReplicationError::ReadOnlyReplica {
                    path: self.journal.dir.clone(),
                    primary: None,
                    epoch: policy.epoch,
                }
                .into());
            }
            _ => {}
        }
        self.journal.check_lease()?;
        Ok(policy)
    }

    /// Appends one validated payload without waiting for replicas.
    fn append_unwaited(&mut self, payload: &[u8]) -> Result<u64> {
        if self.appender.is_none() {
            self.appender = Some(Appender::new(self.journal.clone(), self.durability)?);
        }
        let Some(appender) = self.appender.as_mut() else {
            return Err(QueueError::Other("appender not initialised".into()));
        };
        appender.append(|slot| {
            if payload.len() > slot.len() {
                return Err(QueueError::InvalidConfig(format!(
                    "a {}-byte message does not fit a slot of {} bytes",
                    payload.len(),
                    slot.len()
                )));
            }
            for (dst, src) in slot.iter_mut().zip(payload) {
                dst.write(*src);
            }
            Ok(payload.len())
        })
    }

    /// Whether an append now waits for replicas' acknowledgements (the queue replicates
    /// synchronously): such an append blocks, so async callers should move it off the executor.
    pub fn waits_for_acks(&self) -> bool {
        self.journal.policy().required_acks > 0
    }

    /// Syncs what this handle appended to disk.
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
}

#[cfg(all(test, not(repliq_loom)))]
mod tests {
    use super::*;
    use crate::JournalQueue;

    #[crate::message(name = "test.RawNote")]
    #[derive(Debug, PartialEq)]
    struct Note {
        n: u64,
        text: String,
    }

    fn note(n: u64) -> Note {
        Note {
            n,
            text: format!("note {n} with a long enough text"),
        }
    }

    #[test]
    fn reads_in_place_commits_on_demand_and_rewinds() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| QueueError::io("tempdir", e))?;
        let path = dir.path().join("q");
        let mut typed = JournalQueue::<Note>::new(&path, 100)?;
        for n in 0..5 {
            typed.enqueue(&note(n))?;
        }
        let mut raw = RawQueue::open(&path, "bridge", StartAt::Earliest)?;
        assert_eq!(
            raw.schema().map(|s| s.name.to_string()),
            Some("test.RawNote".into())
        );
        let mut seen = Vec::new();
        assert_eq!(raw.read_batch(3, |seq, p| seen.push((seq, p.to_vec())))?, 3);
        assert_eq!(raw.cursor()?, 0, "reading does not move the cursor");
        assert_eq!(raw.read_position()?, 3);
        assert_eq!(
            crate::from_bytes::<Note>(&{
                let mut a = crate::AlignedBytes::new();
                a.extend_from_slice(&seen[1].1);
                a
            })?,
            note(1)
        );
        assert!(
            matches!(raw.commit(4), Err(QueueError::InvalidConfig(_))),
            "past the read position"
        );
        raw.commit(2)?;
        assert_eq!(raw.cursor()?, 2);
        assert_eq!(raw.backlog()?, 3);
        raw.rewind();
        let mut again = Vec::new();
        raw.read_batch(10, |seq, _| again.push(seq))?;
        assert_eq!(again, vec![2, 3, 4], "after a rewind, from the cursor");
        // One record by its sequence, the positions unmoved; none past the tail.
        let mut one = Vec::new();
        assert!(raw.read_at(1, |p| one = p.to_vec())?);
        assert_eq!(one, seen[1].1);
        assert!(!raw.read_at(5, |_| panic!("no record 5"))?);
        assert_eq!((raw.cursor()?, raw.read_position()?), (2, 5));
        raw.commit(5)?;
        // A reopened handle starts at the durable cursor.
        let mut reopened = RawQueue::open(&path, "bridge", StartAt::Earliest)?;
        assert_eq!(reopened.cursor()?, 5);
        assert!(!reopened.wait(Duration::from_millis(20))?);
        Ok(())
    }

    #[test]
    fn appends_are_validated_against_the_schema() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| QueueError::io("tempdir", e))?;
        let path = dir.path().join("q");
        drop(JournalQueue::<Note>::new(&path, 100)?);
        let mut raw = RawQueue::producer(&path)?;
        let good = crate::to_bytes(&note(7))?;
        assert_eq!(raw.append(&good)?, 0);
        let mut bad = good.to_vec();
        bad.truncate(bad.len() - 1);
        assert!(matches!(
            raw.append(&bad),
            Err(QueueError::Deserialization { .. })
        ));
        let json = serde_json::json!({"n": 8, "text": "from JSON, long enough to be out of line"});
        let Some(schema) = raw.schema().cloned() else {
            return Err(QueueError::Other("no schema".into()));
        };
        let encoded = crate::descriptor::from_json(&schema.root, &json)
            .map_err(|e| QueueError::Other(e.to_string()))?;
        assert_eq!(raw.append(&encoded)?, 1);
        let mut typed = JournalQueue::<Note>::open(&path)?;
        assert_eq!(typed.dequeue()?, Some(note(7)));
        assert_eq!(
            typed.dequeue()?,
            Some(Note {
                n: 8,
                text: "from JSON, long enough to be out of line".into()
            })
        );
        assert_eq!(typed.dequeue()?, None, "the invalid bytes were not written");
        Ok(())
    }
}
