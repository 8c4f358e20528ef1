//! Appending records.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::format::*;
use super::header::{self, State};
use super::segment::Segment;
use super::{Journal, cursor, notify};
use crate::raw::clock::monotonic_millis;
use crate::{QueueError, Result};

/// How appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Records are in the page cache when `enqueue` returns: they survive the process being
    /// killed, not the machine losing power. Call `flush` to sync explicitly. The default.
    #[default]
    PageCache,
    /// Group commit: `enqueue` syncs (`msync`) the records written since the last sync once
    /// `interval` has passed since it. A record is synced by the first `enqueue` or `flush` of
    /// this handle after `interval`; an idle handle does not sync by itself.
    GroupCommit {
        /// Longest time between syncs while the handle is writing.
        interval: Duration,
    },
    /// Every `enqueue` syncs its record before returning (slow: one `msync` per message).
    Sync,
}

/// Appends records to a journal. One per producer handle; any number may append to one queue
/// concurrently, in any number of processes.
#[derive(Debug)]
pub(crate) struct Appender {
    journal: Arc<Journal>,
    seg: Arc<Segment>,
    /// Position of the first record not known to be final.
    pos: usize,
    /// Sequence number the record at `pos` gets if it is committed.
    seq: u64,
    /// `enqueue` may write sequence numbers below this without re-reading the cursors.
    limit: u64,
    durability: Durability,
    /// Start of the range written but not yet synced, in `seg` or an earlier segment.
    dirty: Option<(Arc<Segment>, usize)>,
    last_sync: Instant,
}

impl Appender {
    /// Finds the tail: the last segment, from its last index point (bounded scan).
    pub(crate) fn new(journal: Arc<Journal>, durability: Durability) -> Result<Appender> {
        let list = journal.list_segments()?;
        let seg = match list.last() {
            Some(&first) => journal.segment_or_create(first)?,
            None => journal.segment_or_create(0)?,
        };
        let (pos, seq) = seg.last_index_point();
        Ok(Appender {
            journal,
            seg,
            pos,
            seq,
            limit: 0,
            durability,
            dirty: None,
            last_sync: Instant::now(),
        })
    }

    fn corrupt(&self, reason: String) -> QueueError {
        QueueError::Corrupt {
            path: self.seg.path.clone(),
            offset: self.pos as u64,
            reason,
        }
    }

    fn roll(&mut self) -> Result<()> {
        let next = self.journal.segment_or_create(self.seq)?;
        if self.durability != Durability::PageCache {
            self.sync_dirty()?;
        }
        self.pos = next.data_start;
        self.seg = next;
        Ok(())
    }

    /// Capacity check for writing sequence `seq`.
    fn check_capacity(&mut self, seq: u64) -> Result<()> {
        if seq < self.limit {
            return Ok(());
        }
        let capacity = self.journal.config().capacity;
        match cursor::min_position(&self.journal.meta) {
            None => {
                self.limit = seq.saturating_add(1);
                Ok(())
            }
            Some(min) => {
                self.limit = min.saturating_add(capacity);
                if seq < self.limit {
                    Ok(())
                } else {
                    Err(QueueError::Full { capacity })
                }
            }
        }
    }

    /// Skips over final records until `pos` is at an EMPTY or RESERVED header.
    /// Returns the header word's current value.
    fn find_tail(&mut self) -> Result<u64> {
        let lease = self.journal.lease_ms();
        let mut spins = 0u32;
        loop {
            if self.pos + RECORD_HEADER > self.seg.size {
                self.roll()?;
                continue;
            }
            let Some(word) = self.seg.header_word(self.pos) else {
                return Err(self.corrupt("record position outside the segment".into()));
            };
            let w = word.load(Ordering::Acquire);
            match header::decode(w) {
                State::Empty => return Ok(w),
                State::Committed { len } => {
                    let extent = committed_extent(len as usize);
                    if self.pos + extent > self.seg.size {
                        return Err(self.corrupt(format!(
                            "record length {len} runs past the end of the segment"
                        )));
                    }
                    self.pos += extent;
                    self.seq += 1;
                }
                State::Abandoned { extent } => {
                    if extent < RECORD_HEADER || self.pos + extent > self.seg.size {
                        return Err(self.corrupt(format!("invalid abandoned extent {extent}")));
                    }
                    self.pos += extent;
                }
                State::End => self.roll()?,
                State::Reserved { stamp, .. } => {
                    if header::lease_expired(stamp, monotonic_millis(), lease) {
                        header::abandon(word, w);
                    } else {
                        spins += 1;
                        if spins < 200 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                }
                State::Invalid(v) => {
                    return Err(self.corrupt(format!("invalid record header word {v:#018x}")));
                }
            }
        }
    }

    /// Appends one record whose payload `write` serializes into the slot it is given (16-byte
    /// aligned) and whose length it returns. Returns the record's sequence number.
    pub(crate) fn append(
        &mut self,
        mut write: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<u64> {
        let max_extent =
            committed_extent(self.journal.config().max_payload as usize).min(header::MAX_EXTENT);
        loop {
            self.find_tail()?;
            self.check_capacity(self.seq)?;
            let room = self.seg.size - self.pos;
            let extent = room.min(max_extent) & !(RECORD_ALIGN - 1);
            let Some(word) = self.seg.header_word(self.pos) else {
                return Err(self.corrupt("record position outside the segment".into()));
            };
            let Ok(reserved) = header::try_reserve(word, extent, monotonic_millis()) else {
                continue;
            };
            // The extent [pos, pos + extent) is ours until we commit or are abandoned.
            let (seg, pos, seq) = (self.seg.clone(), self.pos, self.seq);
            let written = seg
                .map
                .with_slot(pos + RECORD_HEADER, extent - RECORD_HEADER, &mut write)
                .unwrap_or_else(|| Err(self.corrupt("reserved extent outside the segment".into())));
            match written {
                Ok(len) if len <= extent - RECORD_HEADER => {
                    let len32 = len as u32;
                    let time = now_nanos();
                    let payload = seg.map.committed(pos + RECORD_HEADER, len).unwrap_or(&[]);
                    let crc = record_crc(seq, len32, time, payload);
                    let mut head = [0u8; RECORD_HEADER - R_SEQ];
                    head[0..8].copy_from_slice(&seq.to_le_bytes());
                    head[8..12].copy_from_slice(&crc.to_le_bytes());
                    head[12..16].copy_from_slice(&len32.to_le_bytes());
                    head[16..24].copy_from_slice(&time.to_le_bytes());
                    let _ = seg.map.write(pos + R_SEQ, &head);
                    if header::commit(word, reserved, len32) {
                        seg.index_record(seq, pos);
                        self.pos = pos + committed_extent(len);
                        self.seq = seq + 1;
                        let meta = &self.journal.meta;
                        notify::wake(meta.data_notify(), meta.data_waiters());
                        self.after_commit(&seg, pos)?;
                        return Ok(seq);
                    }
                    // Abandoned while we were writing: the extent is dead, retry at the tail.
                }
                Ok(len) => {
                    header::abandon(word, reserved);
                    return Err(QueueError::Other(format!(
                        "serializer reported {len} bytes written into a slot of {}",
                        extent - RECORD_HEADER
                    )));
                }
                Err(e) => {
                    if extent < max_extent {
                        // Did not fit into the rest of this segment: end it and retry in the next.
                        header::end_segment(word, reserved);
                        continue;
                    }
                    header::abandon(word, reserved);
                    return Err(e);
                }
            }
        }
    }

    fn after_commit(&mut self, seg: &Arc<Segment>, pos: usize) -> Result<()> {
        match self.durability {
            Durability::PageCache => Ok(()),
            Durability::Sync => seg
                .map
                .flush_range(pos, self.pos.saturating_sub(pos))
                .map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e)),
            Durability::GroupCommit { interval } => {
                if self.dirty.is_none() {
                    self.dirty = Some((seg.clone(), pos));
                }
                if self.last_sync.elapsed() >= interval {
                    self.sync_dirty()?;
                }
                Ok(())
            }
        }
    }

    /// Syncs everything this appender wrote and has not synced yet.
    pub(crate) fn sync_dirty(&mut self) -> Result<()> {
        self.last_sync = Instant::now();
        let Some((seg, from)) = self.dirty.take() else {
            return Ok(());
        };
        let result = if Arc::ptr_eq(&seg, &self.seg) {
            seg.map.flush_range(from, self.pos.saturating_sub(from))
        } else {
            seg.map
                .flush_range(from, seg.size - from)
                .and_then(|()| self.seg.map.flush_range(0, self.pos))
        };
        result.map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))
    }

    /// Syncs the current segment up to the tail, whatever the durability mode.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.sync_dirty()?;
        self.seg
            .map
            .flush_range(0, self.pos)
            .map_err(|e| QueueError::io(format!("msync {}", self.seg.path.display()), e))?;
        self.journal.meta.flush()
    }

    /// The sequence number the next record appended here would get, after catching up with
    /// records other appenders committed.
    pub(crate) fn next_seq(&mut self) -> Result<u64> {
        self.find_tail_nonblocking()?;
        Ok(self.seq)
    }

    /// Like `find_tail` but stops at a live reservation instead of waiting for it.
    fn find_tail_nonblocking(&mut self) -> Result<()> {
        loop {
            if self.pos + RECORD_HEADER > self.seg.size {
                match self.journal.segment(self.seq)? {
                    Some(next) => {
                        self.pos = next.data_start;
                        self.seg = next;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let Some(word) = self.seg.header_word(self.pos) else {
                return Ok(());
            };
            match header::decode(word.load(Ordering::Acquire)) {
                State::Committed { len } => {
                    let extent = committed_extent(len as usize);
                    if self.pos + extent > self.seg.size {
                        return Err(self.corrupt(format!(
                            "record length {len} runs past the end of the segment"
                        )));
                    }
                    self.pos += extent;
                    self.seq += 1;
                }
                State::Abandoned { extent } if extent >= RECORD_HEADER => {
                    self.pos = (self.pos + extent).min(self.seg.size);
                }
                State::End => self.pos = self.seg.size,
                _ => return Ok(()),
            }
        }
    }
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
