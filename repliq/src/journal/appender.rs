//! Appending records.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::format::*;
use super::header;
use super::segment::{self, Ahead, Segment};
use super::walk::{self, Entry, Walk};
use super::{Journal, cursor, notify};
use crate::raw::MappedFile;
use crate::raw::clock::{monotonic_millis, realtime_coarse_nanos, realtime_nanos};
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
    /// The first entry not known to be final, and the sequence number it gets if it is
    /// committed. Its segment is `None` until the first segment exists.
    walk: Walk,
    /// `enqueue` may write sequence numbers below this without re-reading the cursors.
    limit: u64,
    durability: Durability,
    /// Start of the range written but not yet synced, in `seg` or an earlier segment.
    dirty: Option<(Arc<Segment>, usize)>,
    last_sync: Instant,
    /// The segment for whose successor a spare file was requested.
    spare_for: u64,
    /// Stamp records with the full-resolution wall clock instead of the coarse one.
    precise_time: bool,
}

/// How long a producer that needs a new segment waits for the spare file being prepared.
const SPARE_WAIT: Duration = Duration::from_secs(2);

/// Where the tail is.
enum Tail {
    /// An EMPTY header in the current segment, at `pos`.
    Here,
    /// The current segment is finished and segment `seq` does not exist yet.
    NeedSegment,
    /// A live reservation of another writer is at the tail and the caller asked not to wait
    /// for it (`find_tail(Wait::Spin)` after a short spin).
    Busy,
}

/// What [`Appender::find_tail`] does at a live reservation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Return [`Tail::Here`] at once (callers that only want the position).
    Never,
    /// Spin, yield, and abandon it once its lease expired (blocking writers).
    Block,
    /// Spin briefly, then return [`Tail::Busy`] (the non-blocking append of async handles).
    Spin,
}

/// What [`Appender::try_append`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The record was committed with this sequence number.
    Done(u64),
    /// Nothing was written: appending now needs a step that may block a thread (creating the
    /// next segment file, waiting for another writer's reservation, a sync). Run
    /// [`Appender::append`] where blocking is allowed.
    WouldBlock,
}

impl Appender {
    /// Finds the tail: the last segment, from its last index point (bounded scan), after
    /// checking that the journal has no hole (see [`Appender::recover`]).
    pub(crate) fn new(journal: Arc<Journal>, durability: Durability) -> Result<Appender> {
        let list = journal.list_segments()?;
        let walk = match list.last() {
            Some(&first) => match journal.segment(first)? {
                Some(seg) => Walk::last_index_point(seg),
                None => Walk::new(None, 0, first),
            },
            None => Walk::new(None, 0, 0),
        };
        let mut appender = Appender {
            journal,
            walk,
            limit: 0,
            durability,
            dirty: None,
            last_sync: Instant::now(),
            spare_for: u64::MAX,
            precise_time: false,
        };
        appender.recover(&list)?;
        Ok(appender)
    }

    /// Refuses to append after a hole: every segment file must end right where the next one
    /// begins, and the tail found must be the journal's end (no later record behind an EMPTY,
    /// reserved or END header). One mapping and a walk from the last index point per segment.
    fn recover(&mut self, list: &[u64]) -> Result<()> {
        walk::check_segment_chain(&self.journal, list)?;
        self.find_tail(Wait::Never)?;
        self.walk.check_tail(&self.journal)
    }

    /// Stamps records with `CLOCK_REALTIME` (ns resolution, ~25 ns per record) instead of
    /// `CLOCK_REALTIME_COARSE` (timer-tick resolution, ~4 ns).
    pub(crate) fn set_precise_time(&mut self, precise: bool) {
        self.precise_time = precise;
    }

    /// Moves to segment `self.walk.seq` if it exists. `Ok(false)` if it does not.
    fn next_segment(&mut self) -> Result<bool> {
        let had = self.walk.seg.is_some();
        match self.walk.next_segment(&self.journal) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // While this appender was idle, other producers went on and retention deleted the
            // segments after its position (consumers were done with them). The tail is in the
            // newest segment: go there. (A segment lost otherwise is the readers' to report.)
            Err(e) => {
                if !self.walk.jump_to_newest_segment(&self.journal)? {
                    return Err(e);
                }
            }
        }
        if had && self.durability != Durability::PageCache {
            self.sync_dirty()?;
        }
        Ok(true)
    }

    /// Capacity check for writing sequence `seq`.
    fn check_capacity(&mut self, seq: u64) -> Result<()> {
        if seq < self.limit {
            return Ok(());
        }
        let capacity = self.journal.config().capacity;
        match cursor::min_consumer_position(&self.journal.meta) {
            None => {
                self.limit = seq.saturating_add(1);
                Ok(())
            }
            Some(min) => {
                self.limit = min.saturating_add(capacity);
                if seq < self.limit {
                    Ok(())
                } else {
                    Err(QueueError::Full {
                        capacity,
                        slowest: cursor::slowest_consumer(&self.journal.meta).unwrap_or_default(),
                    })
                }
            }
        }
    }

    /// Skips over final records until `pos` is at an EMPTY header (waiting for, or abandoning,
    /// a live reservation), or the current segment is finished and the next does not exist.
    fn find_tail(&mut self, wait: Wait) -> Result<Tail> {
        let lease = self.journal.lease_ms();
        let mut spins = 0u32;
        loop {
            let entry = self.walk.look(false)?;
            match entry {
                Entry::Empty => return Ok(Tail::Here),
                Entry::Record(_) | Entry::Abandoned { .. } => self.walk.pass(&entry),
                Entry::SegmentEnd { .. } | Entry::NoSegment => {
                    if self.next_segment()? {
                        continue;
                    }
                    return Ok(Tail::NeedSegment);
                }
                Entry::Reserved { word, stamp } => {
                    if wait == Wait::Never {
                        return Ok(Tail::Here);
                    }
                    if wait == Wait::Spin && spins >= 200 {
                        return Ok(Tail::Busy);
                    }
                    if header::lease_expired(stamp, monotonic_millis(), lease) {
                        // A record boundary reached by the walk (see `walk`): a real header.
                        if let Some(w) = self.walk.header_word() {
                            header::abandon(w, word);
                        }
                    } else {
                        spins += 1;
                        if spins < 200 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                }
            }
        }
    }

    /// Appends one record whose payload `write` serializes into the slot it is given (16-byte
    /// aligned) and whose length it returns. Returns the record's sequence number.
    pub(crate) fn append(
        &mut self,
        write: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<u64> {
        match self.append_inner(write, true)? {
            Attempt::Done(seq) => Ok(seq),
            Attempt::WouldBlock => Err(QueueError::Other(
                "a blocking append reported that it would block".into(),
            )),
        }
    }

    /// [`Appender::append`] without any step that may block the thread: no segment file is
    /// created, no other writer's reservation waited for (beyond a short spin), nothing synced
    /// (a [`Durability`] other than `PageCache` always gives [`Attempt::WouldBlock`]). For the
    /// async handle, which runs the blocking case off the executor. Mapping a segment another
    /// writer already created is done here (an `open` and an `mmap`, no wait).
    pub(crate) fn try_append(
        &mut self,
        write: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<Attempt> {
        if self.durability != Durability::PageCache {
            return Ok(Attempt::WouldBlock);
        }
        self.append_inner(write, false)
    }

    #[allow(unsafe_code)]
    fn append_inner(
        &mut self,
        mut write: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
        blocking: bool,
    ) -> Result<Attempt> {
        let wait = if blocking { Wait::Block } else { Wait::Spin };
        let max_extent =
            committed_extent(self.journal.config().max_payload as usize).min(header::MAX_EXTENT);
        loop {
            // The common case, without building an `Entry`: the walk's position (just after
            // this appender's last record) is still EMPTY. Exactly what `find_tail` concludes
            // from `Entry::Empty` there.
            let fast = self.walk.seg.as_ref().filter(|seg| {
                self.walk.pos + RECORD_HEADER <= seg.size
                    && seg
                        .header_word(self.walk.pos)
                        .is_some_and(|w| w.load(Ordering::Acquire) == 0)
            });
            let seg = match fast {
                Some(seg) => seg.clone(),
                None => match self.find_tail(wait)? {
                    Tail::Busy => return Ok(Attempt::WouldBlock),
                    Tail::NeedSegment => {
                        self.check_capacity(self.walk.seq)?;
                        if !blocking {
                            return Ok(Attempt::WouldBlock);
                        }
                        if let Some((seg, len)) = self.create_segment_with(&mut write)? {
                            let seq = self.walk.seq;
                            self.walk = Walk::new(
                                Some(seg.clone()),
                                seg.data_start + committed_extent(len),
                                seq + 1,
                            );
                            let meta = &self.journal.meta;
                            notify::wake(meta.data_notify(), meta.data_waiters());
                            self.after_commit(&seg, seg.data_start)?;
                            return Ok(Attempt::Done(seq));
                        }
                        // Another appender created it first: append there.
                        continue;
                    }
                    Tail::Here => match self.walk.seg.clone() {
                        Some(seg) => seg,
                        None => continue,
                    },
                },
            };
            self.check_capacity(self.walk.seq)?;
            let room = seg.size - self.walk.pos;
            let extent = room.min(max_extent) & !(RECORD_ALIGN - 1);
            let Some(word) = seg.header_word(self.walk.pos) else {
                return Err(walk::corrupt(
                    &seg,
                    self.walk.pos,
                    "record position outside the segment".into(),
                ));
            };
            let Ok(reserved) = header::try_reserve(word, extent, monotonic_millis()) else {
                continue;
            };
            // The extent [pos, pos + extent) is ours until we commit or are abandoned.
            let (pos, seq) = (self.walk.pos, self.walk.seq);
            // SAFETY: the CAS EMPTY → RESERVED above gave this appender the extent
            // [pos, pos + extent): no one else writes it (others wait, or abandon it, which only
            // CASes the header word), and no one reads it before our commit CAS.
            let written = unsafe {
                seg.map
                    .with_slot(pos + RECORD_HEADER, extent - RECORD_HEADER, &mut write)
            }
            .unwrap_or_else(|| {
                Err(walk::corrupt(
                    &seg,
                    pos,
                    "reserved extent outside the segment".into(),
                ))
            });
            match written {
                Ok(len) if len <= extent - RECORD_HEADER => {
                    // SAFETY: the reservation above gives this appender the record's extent,
                    // and the `with_slot` borrow has ended.
                    unsafe { write_record_fields(&seg.map, pos, seq, len, self.precise_time) };
                    if header::commit(word, reserved, len as u32) {
                        seg.index_record(seq, pos);
                        // The successor's file is prepared once a quarter of this segment is
                        // written: early enough for a fast producer (the rest of the segment
                        // takes longer to fill than the preparation: allocate, fault in the
                        // first window of `pace::WritePace`), late enough that a slow producer does
                        // not pay for it long before it needs it.
                        if self.spare_for != seg.first_seq && pos >= seg.size / 4 {
                            self.spare_for = seg.first_seq;
                            self.journal.prepare_spare();
                        }
                        self.walk.pos = pos + committed_extent(len);
                        seg.prefault_ahead(self.walk.pos, Ahead::Write(&self.journal.write_pace));
                        self.walk.seq = seq + 1;
                        let meta = &self.journal.meta;
                        notify::wake(meta.data_notify(), meta.data_waiters());
                        self.after_commit(&seg, pos)?;
                        return Ok(Attempt::Done(seq));
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
    #[allow(unsafe_code)]
    fn create_segment_with(
        &mut self,
        write: &mut impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    ) -> Result<Option<(Arc<Segment>, usize)>> {
        let config = self.journal.config().clone();
        let first_seq = self.walk.seq;
        let header_bytes = segment::encode_header(&config, first_seq);
        let sync = self.durability != Durability::PageCache;
        let path = self.journal.dir.join(segment::segment_name(first_seq));
        if let Some(mut spare) = self.journal.take_spare(SPARE_WAIT)
            && let Some(map) = spare.map.take()
            && let Some(file) = spare.file.take()
        {
            let _creating = match self.journal.lock_segment_creation(first_seq)? {
                Some(lock) if !path.exists() => lock,
                // Another process rolled first; keep the untouched spare for the next roll.
                _ => {
                    spare.map = Some(map);
                    spare.file = Some(file);
                    self.journal.put_back_spare(spare);
                    return Ok(None);
                }
            };
            // SAFETY: the spare file is this process's alone until it is linked below.
            unsafe { map.write(0, &header_bytes) };
            // SAFETY: as above, nobody else maps the spare before it is linked.
            let len =
                unsafe { fill_first_record(&map, &config, first_seq, write, self.precise_time) }?;
            if sync {
                map.flush_range(0, config.segment_size as usize)
                    .map_err(|e| QueueError::io(format!("msync {}", spare.tmp.display()), e))?;
            }
            // The shared lock every mapping holds (a recycled spare's is still exclusive),
            // before the file gets its name: a process that finds a segment name locked
            // exclusively takes it for one retention is recycling, i.e. gone.
            let _ = file.lock_shared();
            match std::fs::hard_link(&spare.tmp, &path) {
                Ok(()) => {
                    let prefaulted = if self.journal.populate {
                        spare.prefaulted
                    } else {
                        usize::MAX
                    };
                    let seg =
                        Segment::from_created(path, &config, first_seq, map, prefaulted, file);
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
        let Some(_creating) = self.journal.lock_segment_creation(first_seq)? else {
            return Ok(None);
        };
        let mut record_len = None;
        let published = super::publish_file_with(
            &self.journal.dir,
            &path,
            &header_bytes,
            config.segment_size,
            sync,
            |map| {
                // SAFETY: `publish_file_with` hands over the mapping of a file that has no
                // name in the queue's directory yet: nobody else maps it.
                record_len = Some(unsafe {
                    fill_first_record(map, &config, first_seq, write, self.precise_time)
                }?);
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

    #[inline]
    fn after_commit(&mut self, seg: &Arc<Segment>, pos: usize) -> Result<()> {
        // A record written into a page of a truncated file went to a zero page, not the file.
        seg.check_intact()?;
        self.journal.meta.check_intact()?;
        match self.durability {
            Durability::PageCache => Ok(()),
            Durability::Sync => seg
                .map
                .flush_range(pos, self.walk.pos.saturating_sub(pos))
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
        let result = match &self.walk.seg {
            Some(cur) if Arc::ptr_eq(&seg, cur) => seg
                .map
                .flush_range(from, self.walk.pos.saturating_sub(from)),
            Some(cur) => seg
                .map
                .flush_range(from, seg.size - from)
                .and_then(|()| cur.map.flush_range(0, self.walk.pos)),
            None => Ok(()),
        };
        result.map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))
    }

    /// Syncs the current segment up to the tail, whatever the durability mode.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.sync_dirty()?;
        if let Some(seg) = &self.walk.seg {
            seg.map
                .flush_range(0, self.walk.pos)
                .map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))?;
        }
        self.journal.meta.flush()
    }

    /// The sequence number the next record appended here would get, after catching up with
    /// records other appenders committed.
    pub(crate) fn next_seq(&mut self) -> Result<u64> {
        self.find_tail(Wait::Never)?;
        Ok(self.walk.seq)
    }
}

/// Serializes the first record of an unpublished segment into `map` and commits it (plain
/// stores: nobody can see the file yet). Returns the payload length.
///
/// # Safety
///
/// The file behind `map` is not published yet: no other mapping of it exists, in this process
/// or another, and no borrow of `map`'s bytes is alive.
#[allow(unsafe_code)]
unsafe fn fill_first_record(
    map: &MappedFile,
    config: &super::meta::MetaConfig,
    first_seq: u64,
    write: &mut impl FnMut(&mut [MaybeUninit<u8>]) -> Result<usize>,
    precise_time: bool,
) -> Result<usize> {
    let (_, data_start) = segment_geometry(config.segment_size, config.index_interval);
    let size = config.segment_size as usize;
    let max_extent = committed_extent(config.max_payload as usize)
        .min(header::MAX_EXTENT)
        .min(size - data_start);
    // SAFETY: the file is not published yet (the caller's guarantee): nobody else maps it.
    let len = unsafe {
        map.with_slot(
            data_start + RECORD_HEADER,
            max_extent - RECORD_HEADER,
            &mut *write,
        )
    }
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
    // SAFETY: as above; the `with_slot` borrow has ended.
    unsafe { write_record_fields(map, data_start, first_seq, len, precise_time) };
    if let Some(word) = map.atomic_u64(data_start) {
        word.store(header::committed(len as u32), Ordering::Release);
    }
    if let Some(entry) = map.atomic_u32(S_INDEX) {
        entry.store(data_start as u32, Ordering::Release);
    }
    Ok(len)
}

/// Writes a record's sequence number, crc, length and time (header bytes 8..32) for the payload
/// already in place at `pos + 32`.
/// The time is the coarse wall clock (timer-tick resolution) unless `precise_time`.
///
/// # Safety
///
/// The caller owns the record's extent (its reservation, or an unpublished file) and holds no
/// borrow of its bytes: nobody else writes or reads them until the caller commits.
#[allow(unsafe_code)]
unsafe fn write_record_fields(
    map: &MappedFile,
    pos: usize,
    seq: u64,
    len: usize,
    precise_time: bool,
) {
    let len32 = len as u32;
    let time = if precise_time {
        realtime_nanos()
    } else {
        realtime_coarse_nanos()
    };
    // SAFETY: the caller owns the record's extent and holds no borrow of it (the function's
    // contract): nobody writes the payload while it is read here.
    let payload = unsafe { map.committed(pos + RECORD_HEADER, len) }.unwrap_or(&[]);
    let crc = record_crc(seq, len32, time, payload);
    let mut head = [0u8; RECORD_HEADER - R_SEQ];
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[8..12].copy_from_slice(&crc.to_le_bytes());
    head[12..16].copy_from_slice(&len32.to_le_bytes());
    head[16..24].copy_from_slice(&time.to_le_bytes());
    // SAFETY: as above, the caller owns the record's extent, and `payload` is no longer used.
    let _ = unsafe { map.write(pos + R_SEQ, &head) };
}
