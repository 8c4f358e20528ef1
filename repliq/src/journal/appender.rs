//! Appending records.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::format::*;
use super::header::{self, State};
use super::segment::{self, Segment};
use super::{Journal, cursor, notify};
use crate::raw::MappedFile;
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
///
/// Segments are created by the appender that needs one, *with its record already committed
/// inside* (written into a temporary file, then published with a hard link), so every segment
/// holds at least one record and the next segment's name (its first sequence number) is never
/// the same as the current one's, however many reservations in it were abandoned.
#[derive(Debug)]
pub(crate) struct Appender {
    journal: Arc<Journal>,
    /// `None` until the first segment exists.
    seg: Option<Arc<Segment>>,
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
    /// The segment for whose successor a spare file was requested.
    spare_for: u64,
}

/// Where the tail is.
enum Tail {
    /// An EMPTY header in the current segment, at `pos`.
    Here,
    /// The current segment is finished and segment `seq` does not exist yet.
    NeedSegment,
}

impl Appender {
    /// Finds the tail: the last segment, from its last index point (bounded scan).
    pub(crate) fn new(journal: Arc<Journal>, durability: Durability) -> Result<Appender> {
        let list = journal.list_segments()?;
        let (seg, pos, seq) = match list.last() {
            Some(&first) => match journal.segment(first)? {
                Some(seg) => {
                    let (pos, seq) = seg.last_index_point();
                    (Some(seg), pos, seq)
                }
                None => (None, 0, first),
            },
            None => (None, 0, 0),
        };
        Ok(Appender {
            journal,
            seg,
            pos,
            seq,
            limit: 0,
            durability,
            dirty: None,
            last_sync: Instant::now(),
            spare_for: u64::MAX,
        })
    }

    fn corrupt(seg: &Segment, pos: usize, reason: String) -> QueueError {
        QueueError::Corrupt {
            path: seg.path.clone(),
            offset: pos as u64,
            reason,
        }
    }

    /// Moves to segment `self.seq` if it exists. `Ok(false)` if it does not.
    fn next_segment(&mut self) -> Result<bool> {
        let Some(next) = self.journal.segment(self.seq)? else {
            return Ok(false);
        };
        if let Some(cur) = &self.seg
            && Arc::ptr_eq(cur, &next)
        {
            return Err(Self::corrupt(
                cur,
                self.pos,
                "segment ends without a record; its successor would have its own name".into(),
            ));
        }
        if self.durability != Durability::PageCache {
            self.sync_dirty()?;
        }
        self.pos = next.data_start;
        self.seg = Some(next);
        Ok(true)
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

    /// Skips over final records until `pos` is at an EMPTY header (waiting for, or abandoning,
    /// a live reservation), or the current segment is finished and the next does not exist.
    fn find_tail(&mut self, wait: bool) -> Result<Tail> {
        let lease = self.journal.lease_ms();
        let mut spins = 0u32;
        loop {
            let Some(seg) = self.seg.clone() else {
                if self.next_segment()? {
                    continue;
                }
                return Ok(Tail::NeedSegment);
            };
            if self.pos + RECORD_HEADER > seg.size {
                if self.next_segment()? {
                    continue;
                }
                return Ok(Tail::NeedSegment);
            }
            let Some(word) = seg.header_word(self.pos) else {
                return Err(Self::corrupt(
                    &seg,
                    self.pos,
                    "record position outside the segment".into(),
                ));
            };
            let w = word.load(Ordering::Acquire);
            match header::decode(w) {
                State::Empty => return Ok(Tail::Here),
                State::Committed { len } => {
                    let extent = committed_extent(len as usize);
                    if self.pos + extent > seg.size {
                        return Err(Self::corrupt(
                            &seg,
                            self.pos,
                            format!("record length {len} runs past the end of the segment"),
                        ));
                    }
                    self.pos += extent;
                    self.seq += 1;
                }
                State::Abandoned { extent } => {
                    if extent < RECORD_HEADER || self.pos + extent > seg.size {
                        return Err(Self::corrupt(
                            &seg,
                            self.pos,
                            format!("invalid abandoned extent {extent}"),
                        ));
                    }
                    self.pos += extent;
                }
                State::End => self.pos = seg.size,
                State::Reserved { stamp, .. } => {
                    if !wait {
                        return Ok(Tail::Here);
                    }
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
                    return Err(Self::corrupt(
                        &seg,
                        self.pos,
                        format!("invalid record header word {v:#018x}"),
                    ));
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
            let seg = match self.find_tail(true)? {
                Tail::NeedSegment => {
                    self.check_capacity(self.seq)?;
                    if let Some((seg, len)) = self.create_segment_with(&mut write)? {
                        let seq = self.seq;
                        self.pos = seg.data_start + committed_extent(len);
                        self.seq += 1;
                        self.seg = Some(seg.clone());
                        let meta = &self.journal.meta;
                        notify::wake(meta.data_notify(), meta.data_waiters());
                        self.after_commit(&seg, seg.data_start)?;
                        return Ok(seq);
                    }
                    // Another appender created it first: append there.
                    continue;
                }
                Tail::Here => match self.seg.clone() {
                    Some(seg) => seg,
                    None => continue,
                },
            };
            self.check_capacity(self.seq)?;
            let room = seg.size - self.pos;
            let extent = room.min(max_extent) & !(RECORD_ALIGN - 1);
            let Some(word) = seg.header_word(self.pos) else {
                return Err(Self::corrupt(
                    &seg,
                    self.pos,
                    "record position outside the segment".into(),
                ));
            };
            let Ok(reserved) = header::try_reserve(word, extent, monotonic_millis()) else {
                continue;
            };
            // The extent [pos, pos + extent) is ours until we commit or are abandoned.
            let (pos, seq) = (self.pos, self.seq);
            let written = seg
                .map
                .with_slot(pos + RECORD_HEADER, extent - RECORD_HEADER, &mut write)
                .unwrap_or_else(|| {
                    Err(Self::corrupt(
                        &seg,
                        pos,
                        "reserved extent outside the segment".into(),
                    ))
                });
            match written {
                Ok(len) if len <= extent - RECORD_HEADER => {
                    write_record_fields(&seg.map, pos, seq, len);
                    if header::commit(word, reserved, len as u32) {
                        seg.index_record(seq, pos);
                        if self.spare_for != seg.first_seq && pos > seg.size / 2 {
                            self.spare_for = seg.first_seq;
                            self.journal.prepare_spare();
                        }
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

    /// Creates segment `self.seq` with this record committed as its first one. `Ok(None)` if
    /// another appender published the segment first. Uses the spare file prepared in the
    /// background when there is one.
    fn create_segment_with(
        &mut self,
        write: &mut impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<Option<(Arc<Segment>, usize)>> {
        let config = self.journal.config().clone();
        let first_seq = self.seq;
        let header_bytes = segment::encode_header(&config, first_seq);
        let sync = self.durability != Durability::PageCache;
        let path = self.journal.dir.join(segment::segment_name(first_seq));
        if let Some(mut spare) = self.journal.take_spare()
            && let Some(map) = spare.map.take()
        {
            if path.exists() {
                // Another process rolled first; keep the untouched spare for the next roll.
                spare.map = Some(map);
                self.journal.put_back_spare(spare);
                return Ok(None);
            }
            map.write(0, &header_bytes);
            let len = fill_first_record(&map, &config, first_seq, write)?;
            if sync {
                map.flush_range(0, config.segment_size as usize)
                    .map_err(|e| QueueError::io(format!("msync {}", spare.tmp.display()), e))?;
            }
            match std::fs::hard_link(&spare.tmp, &path) {
                Ok(()) => {
                    let seg = Segment::from_created(path, &config, first_seq, map);
                    return Ok(Some((self.journal.adopt_segment(seg), len)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                // The spare was removed as stale by another process: create a file below.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(QueueError::io(format!("publishing {}", path.display()), e));
                }
            }
        }
        let mut record_len = None;
        let published = super::publish_file_with(
            &self.journal.dir,
            &path,
            &header_bytes,
            config.segment_size,
            sync,
            |map| {
                record_len = Some(fill_first_record(map, &config, first_seq, write)?);
                Ok(())
            },
        )?;
        let (true, Some(len)) = (published, record_len) else {
            return Ok(None);
        };
        let seg = self
            .journal
            .segment(first_seq)?
            .ok_or_else(|| QueueError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "segment vanished right after it was created".into(),
            })?;
        Ok(Some((seg, len)))
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
        let result = match &self.seg {
            Some(cur) if Arc::ptr_eq(&seg, cur) => {
                seg.map.flush_range(from, self.pos.saturating_sub(from))
            }
            Some(cur) => seg
                .map
                .flush_range(from, seg.size - from)
                .and_then(|()| cur.map.flush_range(0, self.pos)),
            None => Ok(()),
        };
        result.map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))
    }

    /// Syncs the current segment up to the tail, whatever the durability mode.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.sync_dirty()?;
        if let Some(seg) = &self.seg {
            seg.map
                .flush_range(0, self.pos)
                .map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))?;
        }
        self.journal.meta.flush()
    }

    /// The sequence number the next record appended here would get, after catching up with
    /// records other appenders committed.
    pub(crate) fn next_seq(&mut self) -> Result<u64> {
        self.find_tail(false)?;
        Ok(self.seq)
    }
}

/// Serializes the first record of an unpublished segment into `map` and commits it (plain
/// stores: nobody can see the file yet). Returns the payload length.
fn fill_first_record(
    map: &MappedFile,
    config: &super::meta::MetaConfig,
    first_seq: u64,
    write: &mut impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
) -> Result<usize> {
    let (_, data_start) = segment_geometry(config.segment_size, config.index_interval);
    let size = config.segment_size as usize;
    let max_extent = committed_extent(config.max_payload as usize)
        .min(header::MAX_EXTENT)
        .min(size - data_start);
    let len = map
        .with_slot(
            data_start + RECORD_HEADER,
            max_extent - RECORD_HEADER,
            &mut *write,
        )
        .unwrap_or_else(|| {
            Err(QueueError::Other(
                "segment smaller than its data start".into(),
            ))
        })?;
    if len > max_extent - RECORD_HEADER {
        return Err(QueueError::Other(format!(
            "serializer reported {len} bytes written into a slot of {}",
            max_extent - RECORD_HEADER
        )));
    }
    write_record_fields(map, data_start, first_seq, len);
    if let Some(word) = map.atomic_u64(data_start) {
        word.store(header::committed(len as u32), Ordering::Release);
    }
    if let Some(entry) = map.atomic_u32(S_INDEX) {
        entry.store(data_start as u32, Ordering::Release);
    }
    Ok(len)
}

/// Writes a record's sequence number, crc, length and time (header bytes 8..32) for the payload
/// already in place at `pos + 32`. The caller owns the record (reservation or unpublished file).
fn write_record_fields(map: &MappedFile, pos: usize, seq: u64, len: usize) {
    let len32 = len as u32;
    let time = now_nanos();
    let payload = map.committed(pos + RECORD_HEADER, len).unwrap_or(&[]);
    let crc = record_crc(seq, len32, time, payload);
    let mut head = [0u8; RECORD_HEADER - R_SEQ];
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[8..12].copy_from_slice(&crc.to_le_bytes());
    head[12..16].copy_from_slice(&len32.to_le_bytes());
    head[16..24].copy_from_slice(&time.to_le_bytes());
    let _ = map.write(pos + R_SEQ, &head);
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
