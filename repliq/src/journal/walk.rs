//! The one record walk: every part of the journal that moves over records (readers, appender
//! recovery and tail search, `inspect`/`verify`, the replication source and sink) steps with a
//! [`Walk`], so they all apply the same checks and all report damage the same way.
//!
//! A walk is a position (segment, offset) and the sequence number the next committed record
//! there must carry. [`Walk::look`] classifies the entry at the position without moving and
//! without writing; [`Walk::pass`] moves past a final entry; [`Walk::next_segment`] continues in
//! the segment named by the next sequence number. Positions are only ever reached from a trusted
//! start (a segment's data start, or an index point whose record was checked, see
//! [`Segment::index_lookup`]) by adding the extents of checked entries, so a walk's position is a
//! real record boundary; only there may a caller write a header word (abandon an expired
//! reservation, reserve an EMPTY header).
//!
//! Where the data ends, the walk distinguishes the legitimate "not written yet" tail from a
//! **hole** (records lost in the middle, e.g. a zeroed header or a deleted segment file):
//!
//! * a missing next segment while a later segment file exists is a hole
//!   ([`Walk::next_segment`], always checked: it is rare and cheap);
//! * an EMPTY (or reserved) header followed by a later committed record of this queue in the same
//!   segment, or by a later segment, is a hole ([`Walk::check_tail`]; it reads the rest of the
//!   segment, so the hot paths call it once per position, not per poll).
//!
//! Both are [`QueueError::Corrupt`] naming the file and offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Journal;
use super::format::*;
use super::header::{self, State};
use super::record::RecordRef;
use super::segment::{self, Segment};
use crate::{QueueError, Result};

/// A position in the journal. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    /// `None` while the journal has no segment yet (the first append creates segment 0).
    pub seg: Option<Arc<Segment>>,
    pub pos: usize,
    pub seq: u64,
}

/// What [`Walk::look`] found at the position.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A committed record with the expected sequence number, whose length fields agree and fit
    /// the segment (and whose checksum matched, if asked).
    Record(RecordRef),
    /// An abandoned extent of `extent` bytes.
    Abandoned { extent: usize },
    /// The current segment ends here: at an END marker (`marker`), or fewer than a record
    /// header's bytes are left.
    SegmentEnd { marker: bool },
    /// An EMPTY header: nothing is written here yet (or a hole, see [`Walk::check_tail`]).
    Empty,
    /// A reservation: a writer is writing here, or died (its lease stamp tells).
    Reserved { word: u64, stamp: u32 },
    /// No segment to walk in yet.
    NoSegment,
}

pub(crate) fn corrupt(seg: &Segment, offset: usize, reason: String) -> QueueError {
    QueueError::Corrupt {
        path: seg.path.clone(),
        offset: offset as u64,
        reason,
    }
}

impl Walk {
    pub(crate) fn new(seg: Option<Arc<Segment>>, pos: usize, seq: u64) -> Walk {
        Walk { seg, pos, seq }
    }

    /// The start of segment `seg`.
    pub(crate) fn segment_start(seg: Arc<Segment>) -> Walk {
        let (pos, seq) = (seg.data_start, seg.first_seq);
        Walk::new(Some(seg), pos, seq)
    }

    /// The last checked index point of `seg`: where a search for its end starts.
    pub(crate) fn last_index_point(seg: Arc<Segment>) -> Walk {
        let (pos, seq) = seg.last_index_point();
        Walk::new(Some(seg), pos, seq)
    }

    /// Moves to the last index point of the journal's newest segment, if that segment lies
    /// ahead of this walk: where a producer or a tail follower goes on when retention deleted
    /// the segments between its position and the tail. `false` if there is none ahead.
    pub(crate) fn jump_to_newest_segment(&mut self, journal: &Journal) -> Result<bool> {
        let Some(&newest) = journal.list_segments()?.last() else {
            return Ok(false);
        };
        if newest <= self.seq {
            return Ok(false);
        }
        let Some(seg) = journal.segment(newest)? else {
            return Ok(false);
        };
        *self = Walk::last_index_point(seg);
        Ok(true)
    }

    /// Classifies the entry at the position. Never writes.
    #[allow(unsafe_code)]
    pub(crate) fn look(&self, verify_crc: bool) -> Result<Entry> {
        let Some(seg) = &self.seg else {
            return Ok(Entry::NoSegment);
        };
        let pos = self.pos;
        if pos + RECORD_HEADER > seg.size {
            return Ok(Entry::SegmentEnd { marker: false });
        }
        let Some(word) = seg.header_word(pos) else {
            return Err(corrupt(
                seg,
                pos,
                "record position outside the segment".into(),
            ));
        };
        let w = word.load(Ordering::Acquire);
        // After the load: a truncated page reads as EMPTY, which must not look like the tail.
        seg.check_intact()?;
        Ok(match header::decode(w) {
            State::Empty => Entry::Empty,
            State::Reserved { stamp, .. } => Entry::Reserved { word: w, stamp },
            State::End => Entry::SegmentEnd { marker: true },
            State::Abandoned { extent } => {
                if extent < RECORD_HEADER
                    || !extent.is_multiple_of(RECORD_ALIGN)
                    || pos + extent > seg.size
                {
                    return Err(corrupt(
                        seg,
                        pos,
                        format!("invalid abandoned extent {extent}"),
                    ));
                }
                Entry::Abandoned { extent }
            }
            State::Committed { len } => {
                // SAFETY: the word at `pos` was acquire-loaded just above and decoded as
                // COMMITTED with length `len`.
                let rec = unsafe { self.check_record(seg, len, verify_crc) }?;
                Entry::Record(rec)
            }
            State::Invalid(v) => {
                return Err(corrupt(
                    seg,
                    pos,
                    format!("invalid record header word {v:#018x}"),
                ));
            }
        })
    }

    /// Checks the committed record at the position (bounds, header fields, crc if asked) and
    /// makes its [`RecordRef`].
    ///
    /// # Safety
    ///
    /// The caller acquire-loaded the header word at the position as COMMITTED with length `len`.
    #[allow(unsafe_code)]
    unsafe fn check_record(
        &self,
        seg: &Arc<Segment>,
        len: u32,
        verify_crc: bool,
    ) -> Result<RecordRef> {
        let (pos, len) = (self.pos, len as usize);
        if pos + committed_extent(len) > seg.size {
            return Err(corrupt(
                seg,
                pos,
                format!("record length {len} runs past the end of the segment"),
            ));
        }
        // SAFETY: the caller acquire-loaded the header word at `pos` as COMMITTED.
        let Some((seq, crc, stored_len, time)) = (unsafe { seg.header_fields(pos) }) else {
            return Err(corrupt(
                seg,
                pos,
                "record header outside the segment".into(),
            ));
        };
        // The fields may lie on a page past a truncation (read as zeros): say so, not "bad field".
        seg.check_intact()?;
        if seq != self.seq {
            return Err(corrupt(
                seg,
                pos,
                format!("record has sequence number {seq}, expected {}", self.seq),
            ));
        }
        if stored_len as usize != len {
            return Err(corrupt(
                seg,
                pos,
                format!("record length field {stored_len} disagrees with its header word ({len})"),
            ));
        }
        // SAFETY: the caller acquire-loaded the header word at `pos` as COMMITTED with length
        // `len`, and the extent was checked against the segment's size above.
        let rec = unsafe { RecordRef::committed(seg.clone(), pos, seq, len, time, crc) };
        // Touch every page of the payload now, so that a file truncated under it is found here
        // (`raw::sigbus` backs the missing pages with zeros and marks the mapping) and not after
        // the record was handed out: one load of a line the header load brought in, for a small
        // record.
        let payload = rec.payload();
        for i in (0..payload.len())
            .step_by(4096)
            .chain(payload.len().checked_sub(1))
        {
            std::hint::black_box(payload[i]);
        }
        seg.check_intact()?;
        if verify_crc {
            let actual = record_crc(seq, stored_len, time, rec.payload());
            if actual != crc {
                return Err(corrupt(
                    seg,
                    pos,
                    format!(
                        "checksum mismatch in record {seq} (stored {crc:#010x}, computed {actual:#010x})"
                    ),
                ));
            }
        }
        Ok(rec)
    }

    /// Moves past a record or an abandoned extent that [`Walk::look`] just returned at this
    /// position. Other entries do not move.
    pub(crate) fn pass(&mut self, entry: &Entry) {
        match entry {
            Entry::Record(rec) => self.pass_record(rec),
            Entry::Abandoned { extent } => self.pos += extent,
            // A segment end stays where it is (so that a hole check can start there); the walk
            // goes on with `next_segment`.
            _ => {}
        }
    }

    /// Moves past `rec`, a record [`Walk::look`] returned (at this or an earlier position).
    pub(crate) fn pass_record(&mut self, rec: &RecordRef) {
        self.pos = rec.pos() + committed_extent(rec.len());
        self.seq = rec.seq() + 1;
        if !self
            .seg
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, rec.segment()))
        {
            self.seg = Some(rec.segment().clone());
        }
    }

    /// The header word at the position, for the one who may write it (see the module docs).
    pub(crate) fn header_word(&self) -> Option<&std::sync::atomic::AtomicU64> {
        self.seg.as_ref()?.header_word(self.pos)
    }

    /// At a segment end (or before the first segment): continues in the segment named by the
    /// next sequence number. `Ok(false)` if it does not exist (yet).
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] if it does not exist but a later segment does (a hole), or if it is
    /// the current segment again.
    pub(crate) fn next_segment(&mut self, journal: &Journal) -> Result<bool> {
        if self.enter(journal)? {
            return Ok(true);
        }
        let list = journal.list_segments()?;
        match self.seg.as_ref().map(|s| s.path.clone()) {
            // No segment yet: the journal starts at the first one that exists (retention may
            // have deleted the one asked for).
            None => match list.first() {
                Some(&first) if first > self.seq => {
                    if let Some(seg) = journal.segment(first)? {
                        *self = Walk::segment_start(seg);
                        return Ok(true);
                    }
                    Ok(false)
                }
                _ => Ok(false),
            },
            Some(cur) => match list.iter().find(|&&s| s > self.seq) {
                // Segments are created in order, so a later one existing means ours existed
                // before it, unless it is missing: open it again to be sure (it may have been
                // created between the first attempt and the listing).
                Some(&later) if !self.enter(journal)? => Err(QueueError::Corrupt {
                    path: journal.dir.join(segment::segment_name(self.seq)),
                    offset: 0,
                    reason: format!(
                        "segment file missing: {} ends before record {}, but segment {later} \
                         exists (records {}..{later} are lost)",
                        cur.display(),
                        self.seq,
                        self.seq
                    ),
                }),
                Some(_) => Ok(true),
                None => Ok(false),
            },
        }
    }

    /// Moves to segment `self.seq` if it exists.
    fn enter(&mut self, journal: &Journal) -> Result<bool> {
        if let Some(next) = journal.segment(self.seq)? {
            if let Some(cur) = &self.seg
                && Arc::ptr_eq(cur, &next)
            {
                return Err(corrupt(
                    cur,
                    self.pos,
                    "segment ends without a record; its successor would have its own name".into(),
                ));
            }
            self.pos = next.data_start;
            self.seg = Some(next);
            return Ok(true);
        }
        Ok(false)
    }

    /// Proves that the EMPTY, reserved or END header at the position (or the end of the journal's
    /// last segment) is the journal's tail, not a hole: no later segment exists and no later
    /// record of this queue follows in the segment.
    /// Reads the rest of the segment: call it once per position, not per poll.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] naming the file and the offset of the hole.
    pub(crate) fn check_tail(&self, journal: &Journal) -> Result<()> {
        let Some(seg) = &self.seg else {
            return Ok(());
        };
        // Writers may extend the journal while this runs: what follows then is new data, not a
        // hole. A hole's header word does not change; compare it before and after.
        let word = || seg.header_word(self.pos).map(|w| w.load(Ordering::Acquire));
        let before = word();
        if let Some(w) = before
            && matches!(
                header::decode(w),
                State::Committed { .. } | State::Abandoned { .. }
            )
        {
            return Ok(()); // the walk's position is no longer the end: written meanwhile
        }
        let grew = || word() != before;
        if let Some(&later) = journal
            .list_segments()?
            .iter()
            .find(|&&s| s > seg.first_seq)
            && !grew()
            && journal.segment(self.seq)?.is_none()
        {
            return Err(corrupt(
                seg,
                self.pos,
                format!(
                    "the journal stops here (record {} is missing), but segment {later} follows",
                    self.seq
                ),
            ));
        }
        let mut q = self.pos + RECORD_ALIGN;
        // Only where the file may hold data: what the file system reports as a hole reads as
        // zeros, i.e. EMPTY header words (the rest of a pre-allocated segment, usually most of
        // it, is neither read nor faulted in).
        while q + RECORD_HEADER <= seg.size {
            let Some((start, stop)) = seg.next_data(q) else {
                break;
            };
            // The record grid's last position at or before `start` (a header word may begin
            // in the hole's last bytes).
            q += (start.saturating_sub(q)) / RECORD_ALIGN * RECORD_ALIGN;
            while q < stop && q + RECORD_HEADER <= seg.size {
                // Zero header words (EMPTY) start no record: skipped with one load each.
                let Some(next) = seg.next_nonzero_header(q, stop) else {
                    q += (stop - q).div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
                    break;
                };
                q = next;
                if let Some(found) = self.record_at(seg, q) {
                    if grew() {
                        return Ok(());
                    }
                    return Err(corrupt(
                        seg,
                        self.pos,
                        format!(
                            "the journal stops here (record {} is missing), but record {found} \
                             follows at offset {q}",
                            self.seq
                        ),
                    ));
                }
                q += RECORD_ALIGN;
            }
        }
        Ok(())
    }

    /// The sequence number of a committed record of this segment at `q`, later than the walk's
    /// position, if one is there (header word committed, sequence number in range, lengths agree,
    /// checksum matches: a payload cannot pass for one by accident).
    #[allow(unsafe_code)]
    fn record_at(&self, seg: &Segment, q: usize) -> Option<u64> {
        let w = seg.header_word(q)?.load(Ordering::Acquire);
        let State::Committed { len } = header::decode(w) else {
            return None;
        };
        if q + committed_extent(len as usize) > seg.size {
            return None;
        }
        // SAFETY: the header word at `q` was acquire-loaded as COMMITTED just above (even if it
        // lies inside another record's payload, those bytes are committed and never change).
        let (seq, crc, stored_len, time) = unsafe { seg.header_fields(q) }?;
        let span = (seg.size / RECORD_HEADER) as u64;
        if seq <= self.seq || seq > self.seq + span || stored_len != len {
            return None;
        }
        // SAFETY: as above, the COMMITTED word at `q` covers `len` payload bytes.
        let payload = unsafe { seg.payload(q, len as usize) }?;
        (record_crc(seq, len, time, payload) == crc).then_some(seq)
    }
}

/// How long [`check_segment_chain`] waits for a writer to finish a segment that already has a
/// successor (a reservation left by a dead producer expires sooner).
const CHAIN_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks that each segment file of `list` (ascending first sequence numbers) ends right before
/// the next one begins: walks each but the last from its last index point to its end.
///
/// # Errors
///
/// [`QueueError::Corrupt`] naming the segment and offset where records go missing.
pub(crate) fn check_segment_chain(journal: &Journal, list: &[u64]) -> Result<()> {
    for pair in list.windows(2) {
        let (this, next) = (pair[0], pair[1]);
        let Some(seg) = journal.segment(this)? else {
            continue; // deleted meanwhile (retention)
        };
        let mut walk = Walk::last_index_point(seg);
        let give_up = std::time::Instant::now() + CHAIN_SETTLE;
        loop {
            let entry = walk.look(false)?;
            match entry {
                Entry::Record(_) | Entry::Abandoned { .. } => walk.pass(&entry),
                Entry::SegmentEnd { .. } => break,
                Entry::NoSegment => break,
                // A hole, unless a writer is still finishing this segment: its successor can
                // exist before the segment's last records and end marker are committed (another
                // producer rolled, or the spare was linked while this one wrote). `check_tail`
                // reports a hole whose header word does not change; a word that does is a write
                // in progress: look again, for a bounded time.
                Entry::Empty | Entry::Reserved { .. } => {
                    if walk.seq == next {
                        break; // the successor begins right here: no record is missing
                    }
                    walk.check_tail(journal)?;
                    if std::time::Instant::now() >= give_up {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        if walk.seq != next {
            let seg = walk
                .seg
                .as_ref()
                .unwrap_or_else(|| unreachable!("walk has a segment"));
            return Err(corrupt(
                seg,
                walk.pos,
                format!(
                    "segment ends before record {}, but the next segment file starts at {next}{}",
                    walk.seq,
                    if walk.seq < next {
                        format!(" (records {}..{next} are missing)", walk.seq)
                    } else {
                        " (sequence numbers overlap)".into()
                    }
                ),
            ));
        }
    }
    Ok(())
}
