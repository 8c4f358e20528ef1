//! Reading committed records in sequence order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Journal;
use super::header;
use super::record::RecordRef;
use super::segment::{Ahead, Segment};
use super::walk::{Entry, Walk};
use crate::Result;
use crate::raw::clock::monotonic_millis;

/// A position in the journal that walks forward over committed records.
///
/// Where the data ends, a reader makes sure it is the tail and not a hole
/// ([`Walk::check_tail`]): a strict reader (tools) at once, others once they have waited at the
/// same position for the reservation lease (the check reads the rest of the segment, too much
/// for every poll of a caught-up consumer).
#[derive(Debug)]
pub(crate) struct Reader {
    journal: Arc<Journal>,
    walk: Walk,
    verify_crc: bool,
    strict: bool,
    /// (segment, position, since when) the reader has found no record, and whether that
    /// position was proven to be the tail.
    waiting: Option<(u64, usize, u32, bool)>,
    /// The journal's rewrite count when the files were mapped (`Meta::rewrites`).
    rewrites: u64,
}

impl Reader {
    /// A reader positioned at sequence `seq` (or at the first record after it that exists, if
    /// `seq` was deleted by retention; or at the tail, if `seq` is not written yet).
    pub(crate) fn at(journal: Arc<Journal>, seq: u64, verify_crc: bool) -> Result<Reader> {
        // Read before the files are mapped: a rewrite after this is seen at the next record.
        let rewrites = journal.meta.rewrites().load(Ordering::Acquire);
        let Some(seg) = journal.segment_for(seq)? else {
            return Ok(Reader {
                journal,
                walk: Walk::new(None, 0, 0),
                verify_crc,
                strict: false,
                waiting: None,
                rewrites,
            });
        };
        let (pos, start) = seg.index_lookup(seq);
        let mut reader = Reader {
            journal,
            walk: Walk::new(Some(seg), pos, start),
            verify_crc,
            strict: false,
            waiting: None,
            rewrites,
        };
        if start <= seq {
            reader.skip_to(seq)?;
        }
        // else: `seq` was deleted by retention; the reader starts at the first stored record.
        Ok(reader)
    }

    /// Makes the reader prove at once, every time it finds no record, that it is at the tail and
    /// not at a hole (for tools, which stop there).
    pub(crate) fn strict(mut self) -> Reader {
        self.strict = true;
        self
    }

    /// Turns checksum verification on or off (a tool skipping a record whose checksum fails).
    pub(crate) fn set_verify_crc(&mut self, verify: bool) {
        self.verify_crc = verify;
    }

    /// The sequence number of the next record this reader returns.
    pub(crate) fn seq(&self) -> u64 {
        self.walk.seq
    }

    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// A replica replaced segment files since this reader mapped them (`move_aside_from`, a
    /// resync): map them afresh and walk to where this reader was, or to where the journal now
    /// ends if that is earlier (the records from there on were moved; the cursors past them were
    /// rewound to there).
    #[cold]
    fn remap(&mut self) -> Result<()> {
        self.journal.forget_segments();
        let fresh = Reader::at(self.journal.clone(), self.walk.seq, self.verify_crc)?;
        let strict = self.strict;
        *self = fresh;
        self.strict = strict;
        Ok(())
    }

    /// Walks forward to `target` (or as far as records exist). Returns `true` if reached.
    pub(crate) fn skip_to(&mut self, target: u64) -> Result<bool> {
        if target < self.walk.seq {
            // A cursor moved back: a failover moved the records from `target` on aside
            // (`cursor::rewind_consumers`) and replaced the segment file holding it, whose old
            // mapping this process may still hold. Map the files afresh.
            self.journal.forget_segments();
            let fresh = Reader::at(self.journal.clone(), target, self.verify_crc)?;
            let strict = self.strict;
            *self = fresh;
            self.strict = strict;
            return Ok(self.walk.seq == target);
        }
        let interval = self
            .walk
            .seg
            .as_ref()
            .map_or(1, |s| u64::from(s.index_interval));
        if target - self.walk.seq > 4 * interval {
            // Far ahead: jump with the index instead of walking.
            if let Some(seg) = self.journal.segment_for(target)? {
                let (pos, start) = seg.index_lookup(target);
                if start > self.walk.seq {
                    self.walk = Walk::new(Some(seg), pos, start);
                }
            }
        }
        let mut jumped = false;
        while self.walk.seq < target {
            match self.peek() {
                Ok(Some(rec)) => self.advance(&rec),
                Ok(None) => return Ok(false),
                // Everything before `target` is consumed (it is a cursor position), so retention
                // may have deleted segments between here and there while this reader lagged
                // (other consumers of the same name moved the cursor): a missing segment on the
                // way is not a hole. Jump to `target`'s segment instead of walking through.
                Err(e) if !jumped => {
                    jumped = true;
                    if !self.jump_forward(target)? {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The next committed record, without moving past it. `Ok(None)` if there is none yet.
    /// Moves over abandoned extents and segment ends; abandons reservations whose lease expired.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] on a damaged record or a hole (see [`Reader`]).
    pub(crate) fn peek(&mut self) -> Result<Option<RecordRef>> {
        self.journal.meta.check_intact()?;
        if self.journal.meta.rewrites().load(Ordering::Acquire) != self.rewrites {
            self.remap()?;
        }
        loop {
            let entry = self.walk.look(self.verify_crc)?;
            match entry {
                Entry::Record(rec) => {
                    self.waiting = None;
                    return Ok(Some(rec));
                }
                Entry::Abandoned { .. } => self.walk.pass(&entry),
                Entry::SegmentEnd { .. } | Entry::NoSegment => {
                    if !self.walk.next_segment(&self.journal)? {
                        self.no_record_yet()?;
                        return Ok(None);
                    }
                }
                Entry::Reserved { word, stamp } => {
                    // A read-only journal cannot abandon; it waits for a writer to.
                    if !self.journal.read_only
                        && header::lease_expired(stamp, monotonic_millis(), self.journal.lease_ms())
                    {
                        // The walk's position is a record boundary (see `walk`): the word
                        // abandoned here is a real reservation, never payload bytes.
                        if let Some(w) = self.walk.header_word() {
                            header::abandon(w, word);
                        }
                        continue;
                    }
                    self.no_record_yet()?;
                    return Ok(None);
                }
                Entry::Empty => {
                    self.no_record_yet()?;
                    return Ok(None);
                }
            }
        }
    }

    /// Called where no record is (yet): proves, when due, that this is the tail and not a hole.
    fn no_record_yet(&mut self) -> Result<()> {
        let Some(seg) = &self.walk.seg else {
            return Ok(());
        };
        let now = monotonic_millis();
        let here = (seg.first_seq, self.walk.pos);
        let due = match &mut self.waiting {
            Some((first, pos, since, checked)) if (*first, *pos) == here => {
                !*checked && (self.strict || now.wrapping_sub(*since) >= self.journal.lease_ms())
            }
            slot => {
                *slot = Some((here.0, here.1, now, false));
                self.strict
            }
        };
        if due {
            self.walk.check_tail(&self.journal)?;
            if let Some(w) = &mut self.waiting {
                w.3 = true;
            }
        }
        Ok(())
    }

    /// Moves to the index point at or before `target` in the segment holding it (or, if that
    /// segment is gone, to the start of the oldest one), if that is ahead of this reader.
    fn jump_forward(&mut self, target: u64) -> Result<bool> {
        let Some(seg) = self.journal.segment_for(target)? else {
            return Ok(false);
        };
        let (pos, start) = seg.index_lookup(target);
        if start <= self.walk.seq {
            return Ok(false);
        }
        self.walk = Walk::new(Some(seg), pos, start);
        self.waiting = None;
        Ok(true)
    }

    /// Walks to the tail (past every committed record), for a reader that follows the tail
    /// without a cursor (the replication tail watcher). Retention may delete segments ahead of
    /// such a reader (every cursor passed them); a missing segment on the way then moves it to
    /// the newest segment instead of failing.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn walk_to_tail(&mut self) -> Result<()> {
        loop {
            match self.peek() {
                Ok(Some(rec)) => self.advance(&rec),
                Ok(None) => return Ok(()),
                Err(e) => {
                    if !self.walk.jump_to_newest_segment(&self.journal)? {
                        return Err(e);
                    }
                    self.waiting = None;
                }
            }
        }
    }

    /// Moves past `rec`, which [`Reader::peek`] just returned.
    pub(crate) fn advance(&mut self, rec: &RecordRef) {
        self.walk.pass_record(rec);
        rec.segment().prefault_ahead(self.walk.pos, Ahead::Read);
    }
}

impl Reader {
    /// A cheap check for "something may have changed at this reader's position": the header
    /// word at the position and its current value (for async waiters).
    pub(crate) fn probe(&self) -> Probe {
        let seen = self
            .walk
            .seg
            .as_ref()
            .and_then(|s| s.header_word(self.walk.pos))
            .map(|w| w.load(Ordering::Acquire));
        Probe {
            seg: self.walk.seg.clone(),
            pos: self.walk.pos,
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
