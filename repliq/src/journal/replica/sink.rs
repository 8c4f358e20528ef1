//! The replica's side: frames applied at the same segment and offset, checksums first.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::corrupt;
use crate::journal::format::*;
use crate::journal::header::{self, State};
use crate::journal::segment::{self, Segment};
use crate::journal::walk::{self, Entry, Walk};
use crate::journal::{Journal, notify};
use crate::{QueueError, Result};

/// Ranges a [`ByteSink`] applied and has not synced: (segment, start, end).
#[derive(Debug)]
pub(crate) struct Unsynced(Vec<(Arc<Segment>, usize, usize)>);

impl Unsynced {
    /// Makes the ranges durable (`msync`), after dropping this process's mappings of their
    /// pages (local readers map them again from the page cache).
    pub(crate) fn sync(self) -> Result<()> {
        for (seg, start, end) in self.0 {
            // Unmapped first, with one TLB flush: the write-back would otherwise write-protect
            // every page the header stores mapped writable, with a TLB flush each.
            seg.map.drop_page_mappings(start, end - start);
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
            crate::journal::perms::create_dir_all(aside)
                .map_err(|e| QueueError::io(format!("creating {}", aside.display()), e))?;
            super::move_aside::keep_readable(&dir, aside)?;
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
        // Readers holding the dropped files map afresh (see `move_aside_from`).
        self.journal
            .meta
            .rewrites()
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.file = None;
        self.walk = Walk::new(None, 0, first_seq);
        Ok(())
    }

    /// The checksum of record `seq`, if this replica holds it.
    pub(crate) fn held_crc(&self, seq: u64) -> Option<u32> {
        if seq >= self.walk.seq {
            return None;
        }
        let mut reader = crate::journal::Reader::at(self.journal.clone(), seq, false).ok()?;
        let rec = reader.peek().ok()??;
        (rec.seq() == seq).then_some(rec.crc())
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
            self.journal.prepare_unfaulted_spare();
        }
        Ok(())
    }
}
