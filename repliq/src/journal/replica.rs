//! Byte-level access for replication.
//!
//! * [`ByteSource`] reads the committed region of a primary's journal as [`RawFrame`]s: exact
//!   byte ranges of one segment holding final entries (committed records, abandoned extents, the
//!   end-of-segment marker with the rest of its segment).
//! * [`ByteSink`] applies such frames on a replica at the same segment and offset, so the
//!   replica's segment files are byte-identical to the primary's. Every record's checksum is
//!   verified before it is published; each entry's header word is stored last (release), so local
//!   readers of the replica see whole records only.
//! * [`move_aside_from`] moves a replica's suffix out of the live journal after a failover.
//!
//! A replica's journal has no local appenders (the queue is read-only there), so the sink is the
//! only writer and needs no reservations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::format::*;
use super::header::{self, State};
use super::segment::{self, Segment};
use super::walk::{self, Entry, Walk};
use super::{Journal, notify};
use crate::raw::clock::monotonic_millis;
use crate::{QueueError, Result};

/// A committed record as replication sees it: its sequence number and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// The record's dense sequence number.
    pub seq: u64,
    /// crc32c of the record, as stored in its header.
    pub crc: u32,
}

/// A byte range of one segment file, as the primary holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFrame {
    /// The segment file, by its first sequence number.
    pub segment_first_seq: u64,
    /// Offset of `bytes` in the segment file.
    pub offset: usize,
    /// The committed records inside `bytes`, in order.
    pub records: Vec<RecordId>,
    /// The journal's bytes.
    pub bytes: FrameBytes,
}

/// The bytes of a [`RawFrame`]: the segment's mapping itself when the frame holds no abandoned
/// extent (no copy; the `Arc` keeps the mapping alive, so the frame can be handed to the transport
/// as it is), else a copy in which the abandoned bodies are zeros.
#[derive(Clone)]
pub(crate) enum FrameBytes {
    /// `len` bytes of the segment's mapping at `offset`: final entries, which nobody writes again.
    Mapped {
        /// The segment (owns the mapping).
        seg: Arc<Segment>,
        /// Offset in the segment file.
        offset: usize,
        /// Length.
        len: usize,
    },
    /// A copy.
    Copied(Vec<u8>),
}

impl AsRef<[u8]> for FrameBytes {
    #[allow(unsafe_code)]
    fn as_ref(&self) -> &[u8] {
        match self {
            FrameBytes::Mapped { seg, offset, len } => {
                // SAFETY: `frame_bytes` made this value only for a range whose entries the walk
                // acquire-loaded as final (committed records, an END marker with the rest of its
                // segment): nobody in any process writes them again. The borrow lives no longer
                // than `self`, whose `Arc<Segment>` keeps the mapping alive (a segment file is
                // never truncated while mapped). The bounds were checked when it was made.
                unsafe { seg.map.committed(*offset, *len) }.unwrap_or_default()
            }
            FrameBytes::Copied(v) => v,
        }
    }
}

impl std::ops::Deref for FrameBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl PartialEq for FrameBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for FrameBytes {}

impl std::fmt::Debug for FrameBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameBytes::Mapped { seg, offset, len } => f
                .debug_struct("Mapped")
                .field("segment", &seg.first_seq)
                .field("offset", offset)
                .field("len", len)
                .finish(),
            FrameBytes::Copied(v) => f.debug_tuple("Copied").field(&v.len()).finish(),
        }
    }
}

fn corrupt(seg: &Segment, offset: usize, reason: String) -> QueueError {
    QueueError::Corrupt {
        path: seg.path.clone(),
        offset: offset as u64,
        reason,
    }
}

/// The position right after record `next_seq - 1` (or the start of the journal): where the bytes
/// a replica that holds every record before `next_seq` lacks begin.
///
/// `Ok(None)` for the start of a journal that has no segment yet (a segment is created by the
/// writer of its first record, never empty, so nothing here creates one).
fn position_after(journal: &Arc<Journal>, next_seq: u64) -> Result<Option<(Arc<Segment>, usize)>> {
    if next_seq == 0 {
        return Ok(journal.segment(0)?.map(|seg| {
            let start = seg.data_start;
            (seg, start)
        }));
    }
    let mut reader = super::Reader::at(journal.clone(), next_seq - 1, false)?;
    match reader.peek()? {
        Some(rec) if rec.seq == next_seq - 1 => {
            let end = rec.pos + committed_extent(rec.len);
            Ok(Some((rec.seg.clone(), end)))
        }
        _ => Err(QueueError::protocol(format!(
            "{}: record {} is not in the journal (not written yet, or deleted by retention)",
            journal.dir.display(),
            next_seq - 1
        ))),
    }
}

/// Reads committed journal bytes from a position, frame by frame.
#[derive(Debug)]
pub(crate) struct ByteSource {
    journal: Arc<Journal>,
    /// The first entry not sent yet (its segment is `None` until the journal's first segment
    /// exists).
    walk: Walk,
    /// The END marker at the walk's position was sent: continue in the next segment.
    end_sent: bool,
}

impl ByteSource {
    /// A source whose first frame starts right after record `next_seq - 1`.
    pub(crate) fn at(journal: Arc<Journal>, next_seq: u64) -> Result<ByteSource> {
        let walk = match position_after(&journal, next_seq)? {
            Some((seg, pos)) => Walk::new(Some(seg), pos, next_seq),
            None => Walk::new(None, 0, next_seq),
        };
        Ok(ByteSource {
            journal,
            walk,
            end_sent: false,
        })
    }

    /// A source whose first frame starts at the data start of segment `first_seq` (a full
    /// resync: the records before it are gone).
    pub(crate) fn at_segment_start(journal: Arc<Journal>, first_seq: u64) -> Result<ByteSource> {
        let Some(seg) = journal.segment(first_seq)? else {
            return Err(QueueError::protocol(format!(
                "{}: segment {first_seq} is not in the journal (deleted by retention)",
                journal.dir.display()
            )));
        };
        let start = seg.data_start;
        Ok(ByteSource {
            journal,
            walk: Walk::new(Some(seg), start, first_seq),
            end_sent: false,
        })
    }

    /// The sequence number of the next record this source will send.
    pub(crate) fn next_seq(&self) -> u64 {
        self.walk.seq
    }

    /// The next frame: final entries from the current position, at most about `max_bytes` and
    /// `max_records` records (always at least one entry when one is final). `Ok(None)` if nothing
    /// new is final yet. A segment's END marker is sent with the rest of its segment, in a frame
    /// of its own when nothing precedes it (a receiver must apply such record-less frames too).
    #[allow(unsafe_code)]
    pub(crate) fn read(&mut self, max_bytes: usize, max_records: u64) -> Result<Option<RawFrame>> {
        loop {
            if self.end_sent {
                if !self.walk.next_segment(&self.journal)? {
                    return Ok(None);
                }
                self.end_sent = false;
            }
            let Some(seg) = self.walk.seg.clone() else {
                if self.walk.next_segment(&self.journal)? {
                    continue;
                }
                return Ok(None);
            };
            let start = self.walk.pos;
            let mut end = start;
            let mut records = Vec::new();
            // (offset, extent) of the ABANDONED extents in the frame: shipped as their state word
            // and zeros (see below).
            let mut dead = Vec::new();
            let mut at_end = false;
            while end - start < max_bytes.max(1) && (records.len() as u64) < max_records.max(1) {
                let entry = self.walk.look(false)?;
                match entry {
                    Entry::Empty | Entry::NoSegment => break,
                    Entry::Reserved { word, stamp } => {
                        if header::lease_expired(stamp, monotonic_millis(), self.journal.lease_ms())
                        {
                            // A record boundary reached by the walk: a real header.
                            if let Some(w) = self.walk.header_word() {
                                header::abandon(w, word);
                            }
                            continue;
                        }
                        break;
                    }
                    Entry::Record(ref rec) => {
                        records.push(RecordId {
                            seq: rec.seq,
                            crc: rec.crc,
                        });
                        self.walk.pass(&entry);
                        end = self.walk.pos;
                    }
                    Entry::Abandoned { extent } => {
                        dead.push((self.walk.pos, extent));
                        self.walk.pass(&entry);
                        end = self.walk.pos;
                    }
                    Entry::SegmentEnd { marker } => {
                        if marker {
                            end = seg.size;
                            self.end_sent = true;
                        }
                        at_end = true;
                        break;
                    }
                }
            }
            if end > start {
                let bytes = frame_bytes(&seg, start, end, &dead)?;
                return Ok(Some(RawFrame {
                    segment_first_seq: seg.first_seq,
                    offset: start,
                    records,
                    bytes,
                }));
            }
            if !at_end || !self.walk.next_segment(&self.journal)? {
                return Ok(None);
            }
        }
    }
}

/// The bytes of the entries in `[start, end)` of `seg`, as a frame carries them: committed records
/// and an END marker (with the rest of its segment) verbatim; an ABANDONED extent as its state
/// word followed by zeros. A writer that stalled past its lease may still be writing inside its
/// abandoned extent, in this process or another: those bytes are never read (which would race
/// with its writes) and a replica holds zeros there. `docs/FORMAT.md` ("Replicas") states it.
#[allow(unsafe_code)]
fn frame_bytes(
    seg: &Arc<Segment>,
    start: usize,
    end: usize,
    dead: &[(usize, usize)],
) -> Result<FrameBytes> {
    if dead.is_empty() {
        // SAFETY: as in `copy` below; the borrow ends here (only the bounds are checked).
        if unsafe { seg.map.committed(start, end - start) }.is_none() {
            return Err(corrupt(seg, start, "range outside the segment".into()));
        }
        return Ok(FrameBytes::Mapped {
            seg: seg.clone(),
            offset: start,
            len: end - start,
        });
    }
    let mut bytes = Vec::with_capacity(end - start);
    let copy = |from: usize, to: usize, bytes: &mut Vec<u8>| -> Result<()> {
        if to > from {
            // SAFETY: every entry in [from, to) was acquire-loaded as final by the walk: committed
            // records and an END marker with the rest of its segment, which nobody writes any
            // more. (Abandoned extents, which a stalled writer may still write, are excluded.)
            let live = unsafe { seg.map.committed(from, to - from) }
                .ok_or_else(|| corrupt(seg, from, "range outside the segment".into()))?;
            bytes.extend_from_slice(live);
        }
        Ok(())
    };
    let mut at = start;
    for &(offset, extent) in dead {
        copy(at, offset, &mut bytes)?;
        bytes.extend_from_slice(&header::abandoned(extent).to_le_bytes());
        bytes.resize(bytes.len() + extent - 8, 0);
        at = offset + extent;
    }
    copy(at, end, &mut bytes)?;
    Ok(FrameBytes::Copied(bytes))
}

/// The committed records in a frame's bytes (which start at an entry), for the replication state
/// machine. Checks only the framing; [`ByteSink::apply`] verifies checksums.
pub(crate) fn frame_records(bytes: &[u8]) -> std::result::Result<Vec<RecordId>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.len() - i < RECORD_HEADER {
            // An end-of-segment marker may carry fewer bytes than a record header after it.
            return match header::decode(read_u64(bytes, i)) {
                State::End => Ok(out),
                _ => Err(format!("frame ends inside an entry at byte {i}")),
            };
        }
        let b = &bytes[i..];
        match header::decode(read_u64(b, 0)) {
            State::Committed { len } => {
                out.push(RecordId {
                    seq: read_u64(b, R_SEQ),
                    crc: read_u32(b, R_CRC),
                });
                i += committed_extent(len as usize);
            }
            State::Abandoned { extent } if extent >= RECORD_HEADER => i += extent,
            State::End => return Ok(out),
            other => return Err(format!("unexpected entry {other:?} at byte {i}")),
        }
    }
    Ok(out)
}

/// Ranges a [`ByteSink`] applied and has not synced: (segment, start, end).
#[derive(Debug)]
pub(crate) struct Unsynced(Vec<(Arc<Segment>, usize, usize)>);

impl Unsynced {
    /// Makes the ranges durable (`msync`).
    pub(crate) fn sync(self) -> Result<()> {
        for (seg, start, end) in self.0 {
            seg.map
                .flush_range(start, end - start)
                .map_err(|e| QueueError::io(format!("msync {}", seg.path.display()), e))?;
        }
        Ok(())
    }
}

/// Applies frames to a replica's journal.
#[derive(Debug)]
pub(crate) struct ByteSink {
    journal: Arc<Journal>,
    /// The end of the replica's data (past an END marker: the segment's size); its segment is
    /// `None` while the replica holds no segment yet.
    walk: Walk,
    /// Ranges written since the last [`ByteSink::sync`]: (segment, start, end).
    dirty: Vec<(Arc<Segment>, usize, usize)>,
    /// The file of the segment written last (the sink writes with `pwrite`).
    file: Option<(Arc<Segment>, std::fs::File)>,
    /// A frame's bytes with the header words zeroed (reused).
    scratch: Vec<u8>,
    /// The entries of the frame being applied (reused).
    entries: Vec<(usize, u64, usize, Option<u64>)>,
    /// The segment for whose successor a spare file was asked for last.
    spare_for: Option<u64>,
}

impl ByteSink {
    /// Finds the end of the replica's journal (a bounded scan from the last index point), after
    /// checking that its segments chain up and that the end found is not a hole.
    pub(crate) fn open(journal: Arc<Journal>) -> Result<ByteSink> {
        let list = journal.list_segments()?;
        walk::check_segment_chain(&journal, &list)?;
        let walk = match list.last() {
            Some(&first) => match journal.segment(first)? {
                Some(seg) => Walk::last_index_point(seg),
                None => Walk::new(None, 0, 0),
            },
            None => Walk::new(None, 0, 0),
        };
        let mut sink = ByteSink {
            journal,
            walk,
            dirty: Vec::new(),
            file: None,
            scratch: Vec::new(),
            entries: Vec::new(),
            spare_for: None,
        };
        sink.find_tail()?;
        Ok(sink)
    }

    fn find_tail(&mut self) -> Result<()> {
        loop {
            let entry = self.walk.look(false)?;
            match entry {
                Entry::NoSegment => return Ok(()),
                Entry::Empty | Entry::SegmentEnd { marker: false } => {
                    return self.walk.check_tail(&self.journal);
                }
                Entry::SegmentEnd { marker: true } => {
                    self.walk.check_tail(&self.journal)?;
                    if let Some(seg) = &self.walk.seg {
                        self.walk.pos = seg.size;
                    }
                    return Ok(());
                }
                Entry::Record(_) | Entry::Abandoned { .. } => self.walk.pass(&entry),
                Entry::Reserved { .. } => {
                    let seg = self.walk.seg.as_ref().unwrap_or_else(|| unreachable!());
                    return Err(corrupt(
                        seg,
                        self.walk.pos,
                        "a local writer reserved a record in a replica's journal".into(),
                    ));
                }
            }
        }
    }

    /// One past the last record held.
    pub(crate) fn next_seq(&self) -> u64 {
        self.walk.seq
    }

    /// Whether a resync frame for segment `first_seq` must restart this journal: it needs a
    /// record before that segment and does not hold the segment yet (after a restart killed
    /// before the first frame was applied, it holds it, possibly empty, and follows normally).
    pub(crate) fn needs_restart_at(&self, first_seq: u64) -> bool {
        self.walk.seq <= first_seq
            && self
                .walk
                .seg
                .as_ref()
                .is_none_or(|s| s.first_seq < first_seq)
    }

    /// A full resync: the primary holds nothing before segment `first_seq`, which this journal
    /// needs. Every segment file is deleted (or, with `aside`, moved into that directory), oldest
    /// first, so that at every instant what remains is a valid journal (a suffix of the old
    /// one, as after retention; finally none); then the sink waits for segment `first_seq`,
    /// which the next frame creates. Local readers see the records before `first_seq` go, as
    /// with retention, and then the new ones. A kill at any point leaves a journal that a new
    /// subscription resyncs again.
    pub(crate) fn restart_at(&mut self, first_seq: u64, aside: Option<&Path>) -> Result<()> {
        self.sync()?;
        let dir = self.journal.dir.clone();
        if let Some(aside) = aside {
            super::perms::create_dir_all(aside)
                .map_err(|e| QueueError::io(format!("creating {}", aside.display()), e))?;
        }
        for first in self.journal.list_segments()? {
            let from = dir.join(segment::segment_name(first));
            let done = match aside {
                Some(aside) => std::fs::rename(&from, aside.join(segment::segment_name(first))),
                None => std::fs::remove_file(&from),
            };
            match done {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(QueueError::io(
                        format!("dropping {} for a resync", from.display()),
                        e,
                    ));
                }
            }
        }
        // The directory entries are gone before anything of the new start is written.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        self.journal.forget_segments();
        self.file = None;
        self.walk = Walk::new(None, 0, first_seq);
        Ok(())
    }

    /// The checksum of record `seq`, if this replica holds it.
    pub(crate) fn held_crc(&self, seq: u64) -> Option<u32> {
        if seq >= self.walk.seq {
            return None;
        }
        let mut reader = super::Reader::at(self.journal.clone(), seq, false).ok()?;
        let rec = reader.peek().ok()??;
        (rec.seq == seq).then_some(rec.crc)
    }

    /// Writes the frame's bytes at their segment and offset. Bytes this replica already holds
    /// must be identical (they are skipped); bytes beyond its end must start exactly there.
    /// Local readers see the records at once; they are durable after [`ByteSink::sync`].
    #[allow(unsafe_code)]
    pub(crate) fn apply(
        &mut self,
        segment_first_seq: u64,
        offset: usize,
        bytes: &[u8],
    ) -> Result<()> {
        let mismatch = |what: String| QueueError::protocol(what);
        let seg = match self.walk.seg.clone() {
            Some(seg) if seg.first_seq == segment_first_seq => seg,
            current => {
                let done = current
                    .as_ref()
                    .is_none_or(|s| self.walk.pos + RECORD_HEADER > s.size);
                if segment_first_seq == self.walk.seq && done {
                    let seg = self.journal.replica_segment(self.walk.seq)?;
                    self.walk.pos = seg.data_start;
                    self.walk.seg = Some(seg.clone());
                    seg
                } else if current
                    .as_ref()
                    .is_some_and(|s| segment_first_seq < s.first_seq)
                {
                    // Entirely older than what we hold: a duplicate.
                    return Ok(());
                } else {
                    return Err(mismatch(format!(
                        "frame for segment {segment_first_seq} at offset {offset}, but this \
                         replica is at segment {:?} offset {} (next record {})",
                        current.map(|s| s.first_seq),
                        self.walk.pos,
                        self.walk.seq
                    )));
                }
            }
        };
        let end = offset + bytes.len();
        if end > seg.size {
            return Err(mismatch(format!(
                "frame runs past the end of segment {segment_first_seq}"
            )));
        }
        if offset > self.walk.pos {
            return Err(mismatch(format!(
                "gap in segment {segment_first_seq}: frame starts at offset {offset}, this \
                 replica ends at {}",
                self.walk.pos
            )));
        }
        // Overlap with what we hold: must be identical.
        let overlap = self.walk.pos.min(end) - offset;
        if overlap > 0 {
            // SAFETY: [offset, offset + overlap) lies before this sink's position: entries it
            // wrote and published, which nobody writes again (the sink is the replica's only
            // writer and never rewrites what it holds).
            let held = unsafe { seg.map.committed(offset, overlap) }
                .ok_or_else(|| corrupt(&seg, offset, "range outside the segment".into()))?;
            if held != &bytes[..overlap] {
                return Err(mismatch(format!(
                    "frame bytes at segment {segment_first_seq} offset {offset} differ from the \
                     replica's"
                )));
            }
        }
        let start = self.walk.pos;
        if overlap < bytes.len() {
            self.write_entries(&seg, &bytes[overlap..])?;
        }
        if self.walk.pos > start {
            match self.dirty.last_mut() {
                Some((s, _, end)) if Arc::ptr_eq(s, &seg) && *end == start => *end = self.walk.pos,
                _ => self.dirty.push((seg.clone(), start, self.walk.pos)),
            }
            let meta = &self.journal.meta;
            notify::wake(meta.data_notify(), meta.data_waiters());
        }
        Ok(())
    }

    /// Makes everything applied so far durable (`msync`): one sync for any number of frames.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.take_unsynced().sync()
    }

    /// What was applied since the last sync, to be synced elsewhere (another thread) while this
    /// sink applies more.
    pub(crate) fn take_unsynced(&mut self) -> Unsynced {
        Unsynced(std::mem::take(&mut self.dirty))
    }

    /// Checks the entries of `b` (records, abandoned extents, an end marker), which start at
    /// `self.walk.pos`, then writes them all with one `pwrite` and publishes them in order. Every
    /// entry is checked before anything is written: a frame with a bad entry changes nothing.
    ///
    /// The bytes go through the file, not the mapping: a store into a page of the mapping that
    /// is not in memory yet faults it in, and the file system first fills it (zeros, for the
    /// preallocated blocks of a new segment) only for this sink to overwrite it; `pwrite` of
    /// whole pages skips that. The header words are written as zeros (EMPTY, what the file
    /// holds past the sink's position) and stored afterwards through the mapping (release), one
    /// entry at a time: local readers see whole records only, in order.
    fn write_entries(&mut self, seg: &Arc<Segment>, b: &[u8]) -> Result<()> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        let checked = self.check_entries(seg, b, &mut entries);
        let written = checked.and_then(|()| self.write_checked(seg, b, &entries));
        self.entries = entries;
        written
    }

    /// The first pass of [`ByteSink::write_entries`]: every entry of `b`, as (offset in `b`, header
    /// word, extent, record sequence number), checked (checksums included).
    fn check_entries(
        &self,
        seg: &Segment,
        b: &[u8],
        entries: &mut Vec<(usize, u64, usize, Option<u64>)>,
    ) -> Result<()> {
        let mut i = 0;
        let mut seq = self.walk.seq;
        while i < b.len() {
            let pos = self.walk.pos + i;
            let bad = |reason: String| corrupt(seg, pos, format!("replicated {reason}"));
            let e = &b[i..];
            if e.len() < 8 {
                return Err(bad("frame ends inside a header word".into()));
            }
            let w = read_u64(e, 0);
            let (extent, record) = match header::decode(w) {
                State::Committed { len } => {
                    let extent = committed_extent(len as usize);
                    if e.len() < extent {
                        return Err(bad("frame ends inside a record".into()));
                    }
                    let (rseq, crc, stored_len, time) = (
                        read_u64(e, R_SEQ),
                        read_u32(e, R_CRC),
                        read_u32(e, R_LEN),
                        read_u64(e, R_TIME),
                    );
                    if rseq != seq || stored_len != len {
                        return Err(bad(format!(
                            "record {rseq} (length {stored_len}) where {seq} was expected"
                        )));
                    }
                    let payload = &e[RECORD_HEADER..RECORD_HEADER + len as usize];
                    let actual = record_crc(rseq, len, time, payload);
                    if actual != crc {
                        return Err(bad(format!(
                            "record {rseq} fails its checksum (stored {crc:#010x}, computed {actual:#010x})"
                        )));
                    }
                    seq += 1;
                    (extent, Some(rseq))
                }
                State::Abandoned { extent } if extent >= RECORD_HEADER && e.len() >= extent => {
                    (extent, None)
                }
                State::End => (seg.size.saturating_sub(pos), None),
                other => return Err(bad(format!("entry {other:?}"))),
            };
            if pos + extent > seg.size || e.len() < extent || seg.header_word(pos).is_none() {
                return Err(bad(
                    "entry runs past the end of the segment or the frame".into()
                ));
            }
            entries.push((i, w, extent, record));
            i += extent;
        }
        Ok(())
    }

    /// The second pass of [`ByteSink::write_entries`]: one `pwrite` of `b` with its header words
    /// zeroed, then the header words, in order.
    fn write_checked(
        &mut self,
        seg: &Arc<Segment>,
        b: &[u8],
        entries: &[(usize, u64, usize, Option<u64>)],
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let io = |e| QueueError::io(format!("writing {}", seg.path.display()), e);
        let file = match &self.file {
            Some((s, f)) if Arc::ptr_eq(s, seg) => f,
            _ => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(io)?;
                // The header stores below fault pages the pwrite just cached: without this, each
                // fault also reads ahead (zeroes) the pages after it, which the next pwrite
                // overwrites. Only a hint: nothing depends on it.
                seg.map.advise_no_readahead();
                &self.file.insert((seg.clone(), f)).1
            }
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(b);
        for &(at, ..) in entries {
            scratch[at..at + 8].fill(0);
        }
        let written = file.write_all_at(&scratch, self.walk.pos as u64);
        self.scratch = scratch;
        written.map_err(io)?;
        for &(_, w, extent, record) in entries {
            let pos = self.walk.pos;
            let word = seg
                .header_word(pos)
                .ok_or_else(|| corrupt(seg, pos, "replicated entry outside the segment".into()))?;
            // Publish last: local readers acquire-load this word before reading the body.
            word.store(w, Ordering::Release);
            if let Some(seq) = record {
                seg.index_record(seq, pos);
                self.walk.seq = seq + 1;
            }
            self.walk.pos += extent;
        }
        // The next segment's file is prepared in the background once a quarter of this one is
        // written, as a producer's is (`Journal::replica_segment` takes it).
        if self.spare_for != Some(seg.first_seq) && self.walk.pos >= seg.size / 4 {
            self.spare_for = Some(seg.first_seq);
            self.journal.prepare_spare();
        }
        Ok(())
    }
}

/// Moves every record from `seq` on out of the live journal of a replica, into
/// `<dir>/moved-aside/epoch-<epoch>-from-<seq>/` (whole segment files, the first one as it was).
/// Returns that directory. Processes that still map the old files keep reading the old bytes;
/// new readers see the journal end before `seq`.
#[allow(unsafe_code)]
pub(crate) fn move_aside_from(journal: &Arc<Journal>, seq: u64, epoch: u64) -> Result<PathBuf> {
    let dir = &journal.dir;
    let Some((seg, pos)) = position_after(journal, seq)? else {
        // Nothing is held at all: nothing to move.
        return Ok(dir.join("moved-aside"));
    };
    let aside = dir
        .join("moved-aside")
        .join(format!("epoch-{epoch}-from-{seq}"));
    super::perms::create_dir_all(&aside)
        .map_err(|e| QueueError::io(format!("creating {}", aside.display()), e))?;
    let io = |what: &str, p: &Path, e| QueueError::io(format!("{what} {}", p.display()), e);
    for first in journal.list_segments()? {
        if first > seg.first_seq {
            let from = dir.join(segment::segment_name(first));
            let to = aside.join(segment::segment_name(first));
            std::fs::rename(&from, &to).map_err(|e| io("moving aside", &from, e))?;
        }
    }
    // The segment holding `seq`: keep a full copy aside, and replace the live file (never
    // truncated or rewritten in place while mapped) by a copy that ends before `seq`.
    let live = dir.join(segment::segment_name(seg.first_seq));
    let keep = aside.join(segment::segment_name(seg.first_seq));
    std::fs::copy(&live, &keep).map_err(|e| io("copying aside", &live, e))?;
    // SAFETY: [0, pos) is the segment header (written before publication), the index (on a
    // replica written only by its sink, which runs in this same task and not concurrently) and
    // final entries up to the end of record `seq - 1`, never written again.
    let mut head = unsafe { seg.map.committed(0, pos) }
        .ok_or_else(|| corrupt(&seg, pos, "position outside the segment".into()))?
        .to_vec();
    // Clear index entries of moved records.
    let interval = u64::from(seg.index_interval);
    for k in 0..u64::from(seg.index_entries) {
        if seg.first_seq + k * interval >= seq {
            let at = S_INDEX + 4 * k as usize;
            if let Some(e) = head.get_mut(at..at + 4) {
                e.fill(0);
            }
        }
    }
    let tmp = super::temp_path(dir, "tmp-move-aside");
    let _ = std::fs::remove_file(&tmp);
    super::publish_file(dir, &tmp, &head, seg.size as u64)?;
    std::fs::rename(&tmp, &live).map_err(|e| io("replacing", &live, e))?;
    journal.forget_segments();
    Ok(aside)
}

#[cfg(all(test, not(loom)))]
mod test {
    use super::*;
    use crate::QueueOptions;

    #[crate::message(name = "test.Blob")]
    #[derive(Debug, Clone, PartialEq)]
    struct Blob {
        n: u64,
        data: Vec<u8>,
    }

    fn blob(n: u64) -> Blob {
        Blob {
            n,
            data: vec![n as u8; (n as usize * 37) % 700],
        }
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Copies every final frame from `source` into `sink`; returns the number of frames.
    fn pump(source: &mut ByteSource, sink: &mut ByteSink) -> usize {
        let mut frames = 0;
        while let Some(f) = source.read(8192, u64::MAX).unwrap() {
            sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
            frames += 1;
        }
        sink.sync().unwrap();
        frames
    }

    fn setup() -> (tempfile::TempDir, crate::JournalQueue<Blob>, Arc<Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let primary = QueueOptions::new()
            .segment_size(64 << 10)
            .max_message_size(4096)
            .index_interval(16)
            .create::<Blob>(dir.path().join("primary"))
            .unwrap();
        let (replica, _) = Journal::create_or_open(
            &dir.path().join("replica"),
            primary.journal().config(),
            false,
            crate::journal::InitialPolicy::Inherit,
        )
        .unwrap();
        (dir, primary, replica)
    }

    #[test]
    fn replica_files_are_byte_identical_and_readable() {
        let (dir, mut primary, replica) = setup();
        for n in 0..3000 {
            primary.enqueue(&blob(n)).unwrap();
        }
        let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
        let mut sink = ByteSink::open(replica.clone()).unwrap();
        assert!(pump(&mut source, &mut sink) > 1);
        let f = ByteSource::at(primary.journal().clone(), 10)
            .unwrap()
            .read(1 << 20, 5)
            .unwrap()
            .unwrap();
        assert_eq!(f.records.len(), 5, "max_records bounds a frame");
        assert_eq!(frame_records(&f.bytes).unwrap(), f.records);
        assert_eq!(sink.next_seq(), 3000);
        let (p, r) = (
            files(&dir.path().join("primary")),
            files(&dir.path().join("replica")),
        );
        assert!(p.len() > 3, "several segments: {}", p.len());
        assert_eq!(p, r, "segment files are byte-identical");

        // Resume from what the replica holds, in a new sink and a new source.
        for n in 3000..3500 {
            primary.enqueue(&blob(n)).unwrap();
        }
        let mut sink = ByteSink::open(replica.clone()).unwrap();
        assert_eq!(sink.next_seq(), 3000);
        assert!(sink.held_crc(2999).is_some());
        assert_eq!(sink.held_crc(3000), None);
        let mut source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
        pump(&mut source, &mut sink);
        assert_eq!(sink.next_seq(), 3500);
        assert_eq!(
            files(&dir.path().join("primary")),
            files(&dir.path().join("replica"))
        );

        // The replica's queue reads every message, in place and validated.
        let mut reader = QueueOptions::new()
            .open::<Blob>(dir.path().join("replica"))
            .unwrap();
        for n in 0..3500 {
            assert_eq!(reader.dequeue().unwrap(), Some(blob(n)));
        }
        assert_eq!(reader.dequeue().unwrap(), None);
    }

    /// Issue 10 item 0: a sink that is caught up when the source's segment rolls over. The END
    /// marker of the full segment then travels alone, in a frame without records, which the
    /// receiver must apply all the same (it used to be acknowledged as a duplicate and dropped,
    /// and the next segment's first frame was refused for ever). Small and large messages; the
    /// sink and source are reopened exactly at some rolls, before and after the END frame.
    #[test]
    fn a_caught_up_sink_follows_every_roll() {
        let dir = tempfile::tempdir().unwrap();
        let mut primary = QueueOptions::new()
            .segment_size(8192)
            .max_message_size(2048)
            .index_interval(8)
            .create::<Blob>(dir.path().join("primary"))
            .unwrap();
        let (replica, _) = Journal::create_or_open(
            &dir.path().join("replica"),
            primary.journal().config(),
            false,
            crate::journal::InitialPolicy::Inherit,
        )
        .unwrap();
        let big = |n: u64| Blob {
            n,
            data: vec![
                n as u8;
                if n % 5 == 2 {
                    1500
                } else {
                    (n as usize * 13) % 90
                }
            ],
        };
        let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
        let mut sink = ByteSink::open(replica.clone()).unwrap();
        let (mut rolls, mut record_less, mut segments) = (0, 0, 0);
        for n in 0..600u64 {
            primary.enqueue(&big(n)).unwrap();
            let now = primary.journal().list_segments().unwrap().len();
            let rolled = segments > 0 && now > segments;
            segments = now;
            if rolled {
                rolls += 1;
                if rolls % 3 == 1 {
                    // Reopened holding the last record of the full segment, without its END.
                    sink = ByteSink::open(replica.clone()).unwrap();
                    source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
                }
            }
            let mut first = true;
            while let Some(f) = source.read(1 << 20, u64::MAX).unwrap() {
                assert_eq!(frame_records(&f.bytes).unwrap(), f.records);
                if f.records.is_empty() {
                    record_less += 1;
                }
                sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
                if rolled && first && rolls % 3 == 2 {
                    // Reopened right after the END frame: the full segment is complete.
                    sink.sync().unwrap();
                    sink = ByteSink::open(replica.clone()).unwrap();
                    source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
                }
                first = false;
            }
            sink.sync().unwrap();
            assert_eq!(sink.next_seq(), n + 1, "caught up after record {n}");
        }
        assert!(rolls > 10, "rolled {rolls} times");
        assert!(
            record_less >= rolls / 2,
            "END markers travel alone when the sink is caught up ({record_less} of {rolls})"
        );
        assert_eq!(
            files(&dir.path().join("primary")),
            files(&dir.path().join("replica"))
        );
        let mut reader = QueueOptions::new()
            .open::<Blob>(dir.path().join("replica"))
            .unwrap();
        for n in 0..600 {
            assert_eq!(reader.dequeue().unwrap(), Some(big(n)));
        }
    }

    #[test]
    fn empty_journals_are_not_given_an_empty_segment() {
        let (dir, mut primary, replica) = setup();
        let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
        assert_eq!(source.read(8192, u64::MAX).unwrap(), None);
        let mut sink = ByteSink::open(replica.clone()).unwrap();
        assert_eq!(sink.next_seq(), 0);
        assert!(files(&dir.path().join("primary")).is_empty());
        assert!(files(&dir.path().join("replica")).is_empty());
        // The first record creates the first segment; the source then finds it.
        primary.enqueue(&blob(1)).unwrap();
        assert_eq!(pump(&mut source, &mut sink), 1);
        assert_eq!(sink.next_seq(), 1);
        assert_eq!(
            files(&dir.path().join("primary")),
            files(&dir.path().join("replica"))
        );
    }

    #[test]
    fn duplicates_are_skipped_gaps_and_bad_checksums_refused() {
        let (_dir, mut primary, replica) = setup();
        for n in 0..50 {
            primary.enqueue(&blob(n)).unwrap();
        }
        let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
        let first = source.read(2000, u64::MAX).unwrap().unwrap();
        let second = source.read(2000, u64::MAX).unwrap().unwrap();
        let mut sink = ByteSink::open(replica.clone()).unwrap();

        // A gap: the second frame before the first.
        let err = sink
            .apply(second.segment_first_seq, second.offset, &second.bytes)
            .unwrap_err();
        assert!(
            matches!(&err, QueueError::Replication(repliq_err) if repliq_err.to_string().contains("gap")),
            "{err}"
        );
        sink.apply(first.segment_first_seq, first.offset, &first.bytes)
            .unwrap();
        let held = sink.next_seq();
        // The same frame again: skipped.
        sink.apply(first.segment_first_seq, first.offset, &first.bytes)
            .unwrap();
        assert_eq!(sink.next_seq(), held);

        // A flipped payload byte: refused with the record's checksum, nothing published.
        let mut bad = second.bytes.to_vec();
        bad[RECORD_HEADER + 1] ^= 0x40;
        let err = sink
            .apply(second.segment_first_seq, second.offset, &bad)
            .unwrap_err();
        assert!(
            matches!(&err, QueueError::Corrupt { reason, .. } if reason.contains("fails its checksum")),
            "{err}"
        );
        assert_eq!(sink.next_seq(), held);
        sink.apply(second.segment_first_seq, second.offset, &second.bytes)
            .unwrap();
        assert_eq!(sink.next_seq(), held + second.records.len() as u64);

        // Different bytes over what is held: refused.
        let mut changed = first.bytes.to_vec();
        changed[RECORD_HEADER] ^= 1;
        let err = sink
            .apply(first.segment_first_seq, first.offset, &changed)
            .unwrap_err();
        assert!(
            matches!(&err, QueueError::Replication(repliq_err) if repliq_err.to_string().contains("differ")),
            "{err}"
        );
    }

    #[test]
    fn moved_aside_suffix_leaves_the_journal_at_the_cut() {
        let (dir, mut primary, replica) = setup();
        for n in 0..2000 {
            primary.enqueue(&blob(n)).unwrap();
        }
        let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
        let mut sink = ByteSink::open(replica.clone()).unwrap();
        pump(&mut source, &mut sink);
        let aside = move_aside_from(&replica, 700, 2).unwrap();
        assert!(aside.ends_with("moved-aside/epoch-2-from-700"));
        let sink = ByteSink::open(replica.clone()).unwrap();
        assert_eq!(sink.next_seq(), 700);
        // The moved files hold everything that was there.
        let moved = files(&aside);
        assert!(!moved.is_empty());
        let mut reader = QueueOptions::new()
            .open::<Blob>(dir.path().join("replica"))
            .unwrap();
        for n in 0..700 {
            assert_eq!(reader.dequeue().unwrap(), Some(blob(n)));
        }
        assert_eq!(reader.dequeue().unwrap(), None, "nothing after the cut");
        // The replica's files equal the primary's prefix up to the cut: re-pumping from 700
        // makes them identical again.
        let mut sink = sink;
        let mut source = ByteSource::at(primary.journal().clone(), 700).unwrap();
        pump(&mut source, &mut sink);
        assert_eq!(
            files(&dir.path().join("primary")),
            files(&dir.path().join("replica"))
        );
    }
}
