//! Read-only views of a queue directory for tools: [`inspect`], [`verify`] and [`RawTailer`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::format::*;
use super::walk::{Entry, Walk};
use super::{Journal, Reader, cursor};
use crate::{QueueError, Result};

/// What `repliq inspect` prints: a queue's identity, segments and cursors.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct JournalInfo {
    /// The queue directory.
    pub path: PathBuf,
    /// Segment file format version (`docs/FORMAT.md`).
    pub format_version: u32,
    /// The meta file's format version (1, or 2 since consumer slots are reused).
    pub meta_version: u32,
    /// `Message::NAME` of the queue's message type.
    pub type_name: String,
    /// Its schema fingerprint.
    pub fingerprint: String,
    /// Segment file size in bytes.
    pub segment_size: u64,
    /// Backlog bound (messages not yet consumed by the slowest cursor).
    pub capacity: u64,
    /// The first sequence number of each segment file, ascending.
    pub segments: Vec<u64>,
    /// Sequence number of the first stored record.
    pub first_seq: u64,
    /// Sequence number of the last committed record, if any.
    pub last_seq: Option<u64>,
    /// Named consumer cursors.
    pub cursors: Vec<CursorInfo>,
    /// Replication epoch.
    pub epoch: u64,
    /// Highest sequence number acknowledged by replicas (0 without replication).
    pub acked_seq: u64,
}

/// One consumer cursor in [`JournalInfo`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CursorInfo {
    /// Consumer name.
    pub name: String,
    /// The next sequence number it consumes.
    pub next_seq: u64,
    /// Messages written but not consumed by it.
    pub backlog: u64,
}

/// One consumer cursor slot of a queue, as [`consumer_slots`] (and `repliq consumers`) lists it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConsumerSlot {
    /// The slot index (0..64).
    pub slot: usize,
    /// How many times the slot was reused (0 in a meta file of version 1).
    pub generation: u32,
    /// `"free"`, `"registering"`, `"active"`, `"removed"` (reused after a delay) or `"retired"`
    /// (a registration that died inside it; never reused).
    pub state: &'static str,
    /// The cursor's name (active slots).
    pub name: Option<String>,
    /// The next sequence number the consumer takes (active slots; for replica cursors the next
    /// one the replica needs).
    pub next_seq: Option<u64>,
    /// Whether it is a replica cursor (kept by replication, not removable here).
    pub replica: bool,
}

/// Lists the consumer cursor slots of the queue at `dir` (read-only).
///
/// # Errors
///
/// [`QueueError::Io`] if there is no queue or it cannot be read; [`QueueError::Corrupt`] for a
/// damaged meta file.
pub fn consumer_slots(dir: impl AsRef<Path>) -> Result<Vec<ConsumerSlot>> {
    let journal = Journal::open_read_only(dir.as_ref())?;
    let next: std::collections::HashMap<String, u64> =
        cursor::list(&journal.meta).into_iter().collect();
    Ok(cursor::slots(&journal.meta)
        .into_iter()
        .map(|(slot, generation, used)| {
            let (state, name, replica) = match used {
                cursor::SlotUse::Free => ("free", None, false),
                cursor::SlotUse::Claiming => ("registering", None, false),
                cursor::SlotUse::Active { name, flags, .. } => {
                    ("active", Some(name), flags & cursor::FLAG_REPLICA != 0)
                }
                cursor::SlotUse::Removed => ("removed", None, false),
                cursor::SlotUse::Retired => ("retired", None, false),
            };
            let next_seq = name.as_ref().and_then(|n| next.get(n).copied());
            ConsumerSlot {
                slot,
                generation,
                state,
                name,
                next_seq,
                replica,
            }
        })
        .collect())
}

/// Removes consumer cursor `name` of the queue at `dir`: it no longer holds back capacity or
/// retention, and its slot is reused by a later registration. Handles still consuming under the
/// name register it again at their next read. `Ok(false)` if there is no such cursor.
///
/// # Errors
///
/// [`QueueError::InvalidConfig`] for a replica cursor (`replica:…`: replication keeps those);
/// [`QueueError::Io`] if there is no queue or its meta file cannot be opened for writing.
pub fn remove_consumer(dir: impl AsRef<Path>, name: &str) -> Result<bool> {
    if name.starts_with(cursor::REPLICA_PREFIX) {
        return Err(QueueError::InvalidConfig(format!(
            "{name:?} is a replica cursor: replication keeps it (a replica declared lost holds \
             back nothing)"
        )));
    }
    let journal = Journal::open(dir.as_ref(), false)?;
    Ok(cursor::remove(&journal.meta, name))
}

/// Describes the queue at `dir` without changing it.
///
/// # Errors
///
/// [`QueueError::Io`] if the files cannot be read, [`QueueError::Corrupt`] if the meta file or
/// the tail segment is damaged, or a segment file does not end where the next one begins (a
/// missing segment). Damage inside a segment is found by [`verify`].
pub fn inspect(dir: impl AsRef<Path>) -> Result<JournalInfo> {
    let journal = Journal::open_read_only(dir.as_ref())?;
    let segments = journal.list_segments()?;
    super::walk::check_segment_chain(&journal, &segments)?;
    let first_seq = segments.first().copied().unwrap_or(0);
    let next = match segments.last() {
        Some(&last) => tail_of(&journal, last)?,
        None => 0,
    };
    let last_seq = next.checked_sub(1).filter(|&s| s >= first_seq);
    let config = journal.config().clone();
    let cursors = cursor::list(&journal.meta)
        .into_iter()
        .map(|(name, next_seq)| CursorInfo {
            name,
            next_seq,
            backlog: next.saturating_sub(next_seq),
        })
        .collect();
    Ok(JournalInfo {
        path: journal.dir.clone(),
        format_version: FORMAT_VERSION,
        meta_version: journal.meta.version,
        type_name: config.type_name,
        fingerprint: format!("{:#018x}", config.fingerprint),
        segment_size: config.segment_size,
        capacity: config.capacity,
        segments,
        first_seq,
        last_seq,
        cursors,
        epoch: journal.epoch_word().load(Ordering::Acquire),
        acked_seq: journal.meta.acked().load(Ordering::Acquire),
    })
}

/// The next sequence number after the committed records of segment `first` (and its
/// successors), found from the segment's last index point. A tool's reader: it proves that
/// where it stops is the tail, not a hole.
fn tail_of(journal: &Arc<Journal>, first: u64) -> Result<u64> {
    let Some(seg) = journal.segment(first)? else {
        return Ok(first);
    };
    let (_, start) = seg.last_index_point();
    let mut reader = Reader::at(journal.clone(), start, false)?.strict();
    while let Some(rec) = reader.peek()? {
        reader.advance(&rec);
    }
    Ok(reader.seq())
}

/// The result of [`verify`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Committed records whose checksum matched.
    pub records: u64,
    /// Abandoned extents skipped (left by writers that died or gave up; not an error).
    pub abandoned: u64,
    /// Reservations still open at the tail (a writer is writing, or died recently).
    pub in_progress: u64,
}

/// Checks every record of every segment: header words, sequence numbers, lengths and crc32c.
/// `progress` is called after each segment with (segments done, segments total).
///
/// # Errors
///
/// The first damage found, as [`QueueError::Corrupt`] naming the file and offset.
pub fn verify(
    dir: impl AsRef<Path>,
    mut progress: impl FnMut(usize, usize),
) -> Result<VerifyReport> {
    let journal = Journal::open_read_only(dir.as_ref())?;
    check_cursor_slots(&journal.meta)?;
    let segments = journal.list_segments()?;
    let mut report = VerifyReport {
        segments: 0,
        records: 0,
        abandoned: 0,
        in_progress: 0,
    };
    let Some(&first) = segments.first() else {
        return Ok(report);
    };
    let Some(seg) = journal.segment(first)? else {
        return Ok(report);
    };
    // One walk over every segment in turn: a missing segment file, or a segment that does not
    // end where the next begins, stops it with the file and offset.
    let mut walk = Walk::segment_start(seg);
    report.segments = 1;
    loop {
        let entry = walk.look(true)?;
        match entry {
            Entry::Record(_) => {
                report.records += 1;
                walk.pass(&entry);
            }
            Entry::Abandoned { .. } => {
                report.abandoned += 1;
                walk.pass(&entry);
            }
            Entry::SegmentEnd { .. } | Entry::NoSegment => {
                progress(report.segments, segments.len());
                if !walk.next_segment(&journal)? {
                    break;
                }
                report.segments += 1;
            }
            Entry::Reserved { .. } => {
                report.in_progress += 1;
                break;
            }
            Entry::Empty => break,
        }
    }
    // Where the walk stopped must be the end: no later record, no later segment.
    walk.check_tail(&journal)?;
    if report.segments < segments.len() {
        progress(segments.len(), segments.len());
    }
    Ok(report)
}

/// Checks every consumer cursor slot of the meta file: a garbage consumer area would make every
/// open (which registers or finds a consumer) fail.
fn check_cursor_slots(meta: &super::meta::Meta) -> Result<()> {
    for slot in 0..CURSOR_SLOTS {
        if let Err(reason) = cursor::check_slot(meta, slot) {
            return Err(QueueError::Corrupt {
                path: meta.path.clone(),
                offset: (M_CURSORS + slot * CURSOR_ENTRY) as u64,
                reason: format!("consumer cursor slot {slot}: {reason}"),
            });
        }
    }
    Ok(())
}

/// One record seen by a [`RawTailer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawRecord {
    /// Sequence number.
    pub seq: u64,
    /// Write time, nanoseconds since the Unix epoch (the writer's clock).
    pub time_unix_nanos: u64,
    /// The payload bytes (an archived message).
    pub payload: Vec<u8>,
    /// The segment file holding the record.
    pub file: PathBuf,
    /// Offset of the record's header in that file (the payload starts 32 bytes later).
    pub offset: u64,
}

/// Follows a queue's records as bytes, whatever their message type (for tools). Not a consumer:
/// it has no cursor and holds nothing back.
#[derive(Debug)]
pub struct RawTailer {
    reader: Reader,
}

impl RawTailer {
    /// Opens the queue at `dir` and starts at sequence `from` (`None`: the first stored record).
    ///
    /// # Errors
    ///
    /// As [`inspect`].
    pub fn open(dir: impl AsRef<Path>, from: Option<u64>) -> Result<RawTailer> {
        let journal = Journal::open_read_only(dir.as_ref())?;
        let start = match from {
            Some(s) => s,
            None => journal.earliest_seq()?,
        };
        Ok(RawTailer {
            reader: Reader::at(journal, start, true)?.strict(),
        })
    }

    /// The next record, if one is committed. Never blocks.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] on a damaged record.
    pub fn try_next(&mut self) -> Result<Option<RawRecord>> {
        let Some(rec) = self.reader.peek()? else {
            return Ok(None);
        };
        let out = RawRecord {
            seq: rec.seq(),
            time_unix_nanos: rec.time(),
            payload: rec.payload().to_vec(),
            file: self
                .reader
                .journal()
                .dir
                .join(super::segment::segment_name(rec.segment().first_seq)),
            offset: rec.pos() as u64,
        };
        self.reader.advance(&rec);
        Ok(Some(out))
    }

    /// After [`RawTailer::try_next`] reported a [`QueueError::Corrupt`] record, moves past it if
    /// only its checksum is wrong (its header, sequence number and length are intact), so that a
    /// tool can report it and go on. `Ok(false)` if the damage is structural (a hole, a bad
    /// header): nothing after it can be found by walking.
    ///
    /// # Errors
    ///
    /// I/O errors while mapping a segment.
    pub fn skip_damaged(&mut self) -> Result<bool> {
        self.reader.set_verify_crc(false);
        let next = self.reader.peek();
        self.reader.set_verify_crc(true);
        match next {
            Ok(Some(rec)) => {
                self.reader.advance(&rec);
                Ok(true)
            }
            Ok(None) | Err(QueueError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the next record (spin, then futex sleep).
    ///
    /// # Errors
    ///
    /// As [`RawTailer::try_next`].
    pub fn next_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<RawRecord>> {
        let journal = self.reader.journal().clone();
        let deadline = std::time::Instant::now() + timeout;
        if journal.read_only {
            // Announcing a futex waiter writes to the meta file; a read-only tail polls.
            loop {
                if let Some(rec) = self.try_next()? {
                    return Ok(Some(rec));
                }
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(5)));
            }
        }
        super::notify::wait_until(
            journal.meta.data_notify(),
            journal.meta.data_waiters(),
            Some(deadline),
            || self.try_next(),
        )
    }
}
