//! Reading committed records in sequence order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Journal;
use super::format::*;
use super::header::{self, State};
use super::segment::Segment;
use crate::raw::clock::monotonic_millis;
use crate::{QueueError, Result};

/// A committed record found by [`Reader::peek`].
#[derive(Debug, Clone)]
pub(crate) struct RecordRef {
    pub seg: Arc<Segment>,
    pub pos: usize,
    pub seq: u64,
    pub len: usize,
    pub time: u64,
}

impl RecordRef {
    /// The payload, straight from the mapping (16-byte aligned).
    pub(crate) fn payload(&self) -> &[u8] {
        self.seg
            .map
            .committed(self.pos + RECORD_HEADER, self.len)
            .unwrap_or(&[])
    }
}

/// A position in the journal that walks forward over committed records.
#[derive(Debug)]
pub(crate) struct Reader {
    journal: Arc<Journal>,
    /// `None` while the queue has no segment yet (the first append creates segment 0).
    seg: Option<Arc<Segment>>,
    pos: usize,
    seq: u64,
    verify_crc: bool,
}

impl Reader {
    /// A reader positioned at sequence `seq` (or at the first record after it that exists, if
    /// `seq` was deleted by retention; or at the tail, if `seq` is not written yet).
    pub(crate) fn at(journal: Arc<Journal>, seq: u64, verify_crc: bool) -> Result<Reader> {
        let Some(seg) = journal.segment_for(seq)? else {
            return Ok(Reader {
                journal,
                seg: None,
                pos: 0,
                seq: 0,
                verify_crc,
            });
        };
        let (pos, start) = seg.index_lookup(seq);
        let mut reader = Reader {
            journal,
            seg: Some(seg),
            pos,
            seq: start,
            verify_crc,
        };
        if start <= seq {
            reader.skip_to(seq)?;
        }
        // else: `seq` was deleted by retention; the reader starts at the first stored record.
        Ok(reader)
    }

    /// The sequence number of the next record this reader returns.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Walks forward to `target` (or as far as records exist). Returns `true` if reached.
    pub(crate) fn skip_to(&mut self, target: u64) -> Result<bool> {
        if target < self.seq {
            let fresh = Reader::at(self.journal.clone(), target, self.verify_crc)?;
            *self = fresh;
            return Ok(self.seq == target);
        }
        let target = target.max(self.seq);
        let interval = self.seg.as_ref().map_or(1, |s| u64::from(s.index_interval));
        if target - self.seq > 4 * interval {
            // Far ahead: jump with the index instead of walking.
            if let Some(seg) = self.journal.segment_for(target)? {
                let (pos, start) = seg.index_lookup(target);
                if start > self.seq {
                    self.seg = Some(seg);
                    self.pos = pos;
                    self.seq = start;
                }
            }
        }
        while self.seq < target {
            match self.peek()? {
                Some(rec) => self.advance(&rec),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    fn corrupt(seg: &Segment, offset: usize, reason: String) -> QueueError {
        QueueError::Corrupt {
            path: seg.path.clone(),
            offset: offset as u64,
            reason,
        }
    }

    /// Moves to the segment that starts at the next sequence number, if it exists yet.
    fn next_segment(&mut self) -> Result<bool> {
        match self.journal.segment(self.seq)? {
            Some(next) => {
                if let Some(cur) = &self.seg
                    && Arc::ptr_eq(cur, &next)
                {
                    return Err(Self::corrupt(
                        cur,
                        self.pos,
                        "segment ends without a record; its successor would have its own name"
                            .into(),
                    ));
                }
                self.pos = next.data_start;
                self.seg = Some(next);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The next committed record, without moving past it. `Ok(None)` if there is none yet.
    /// Moves over abandoned extents and segment ends; abandons reservations whose lease expired.
    pub(crate) fn peek(&mut self) -> Result<Option<RecordRef>> {
        loop {
            let Some(seg) = self.seg.clone() else {
                if self.next_segment()? {
                    continue;
                }
                return Ok(None);
            };
            if self.pos + RECORD_HEADER > seg.size {
                if self.next_segment()? {
                    continue;
                }
                return Ok(None);
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
                State::Empty => return Ok(None),
                State::Reserved { stamp, .. } => {
                    if header::lease_expired(stamp, monotonic_millis(), self.journal.lease_ms()) {
                        header::abandon(word, w);
                        continue;
                    }
                    return Ok(None);
                }
                State::Committed { len } => return self.check_record(&seg, len).map(Some),
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
                State::End => {
                    self.pos = seg.size;
                    if self.next_segment()? {
                        continue;
                    }
                    return Ok(None);
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

    fn check_record(&self, seg: &Arc<Segment>, len: u32) -> Result<RecordRef> {
        let len = len as usize;
        if self.pos + committed_extent(len) > seg.size {
            return Err(Self::corrupt(
                seg,
                self.pos,
                format!("record length {len} runs past the end of the segment"),
            ));
        }
        let Some((seq, crc, stored_len, time)) = seg.header_fields(self.pos) else {
            return Err(Self::corrupt(
                seg,
                self.pos,
                "record header outside the segment".into(),
            ));
        };
        if seq != self.seq {
            return Err(Self::corrupt(
                seg,
                self.pos,
                format!("record has sequence number {seq}, expected {}", self.seq),
            ));
        }
        if stored_len as usize != len {
            return Err(Self::corrupt(
                seg,
                self.pos,
                format!("record length field {stored_len} disagrees with its header word ({len})"),
            ));
        }
        let rec = RecordRef {
            seg: seg.clone(),
            pos: self.pos,
            seq,
            len,
            time,
        };
        if self.verify_crc {
            let actual = record_crc(seq, stored_len, time, rec.payload());
            if actual != crc {
                return Err(Self::corrupt(
                    seg,
                    self.pos,
                    format!(
                        "checksum mismatch in record {seq} (stored {crc:#010x}, computed {actual:#010x})"
                    ),
                ));
            }
        }
        Ok(rec)
    }

    /// Moves past `rec`, which [`Reader::peek`] just returned.
    pub(crate) fn advance(&mut self, rec: &RecordRef) {
        self.pos = rec.pos + committed_extent(rec.len);
        self.seq = rec.seq + 1;
        if !self.seg.as_ref().is_some_and(|s| Arc::ptr_eq(s, &rec.seg)) {
            self.seg = Some(rec.seg.clone());
        }
    }
}

impl Reader {
    /// A cheap check for "something may have changed at this reader's position": the header
    /// word at the position and its current value (for async waiters).
    pub(crate) fn probe(&self) -> Probe {
        let seen = self
            .seg
            .as_ref()
            .and_then(|s| s.header_word(self.pos))
            .map(|w| w.load(Ordering::Acquire));
        Probe {
            seg: self.seg.clone(),
            pos: self.pos,
            seen,
        }
    }
}

/// See [`Reader::probe`].
#[derive(Debug)]
pub(crate) struct Probe {
    seg: Option<Arc<Segment>>,
    pos: usize,
    seen: Option<u64>,
}

impl Probe {
    /// `true` if the header word changed since the probe was taken.
    pub(crate) fn changed(&self) -> bool {
        match (
            self.seen,
            self.seg.as_ref().and_then(|s| s.header_word(self.pos)),
        ) {
            (Some(seen), Some(word)) => word.load(Ordering::Acquire) != seen,
            // No header to watch (no segment yet, or at a segment's end): the next record
            // creates a segment, and its producer bumps the futex word, which wakes the waiter.
            _ => false,
        }
    }
}
