//! The primary's side: committed journal bytes read frame by frame.

use std::sync::Arc;

use super::frame::{FrameBytes, RawFrame, RecordId};
use super::{corrupt, position_after};
use crate::journal::Journal;
use crate::journal::header::{self};
use crate::journal::segment::Segment;
use crate::journal::walk::{Entry, Walk};
use crate::raw::clock::monotonic_millis;
use crate::{QueueError, Result};

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
                            seq: rec.seq(),
                            crc: rec.crc(),
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
        // SAFETY: every entry in [start, end) was acquire-loaded as final by the walk (as in
        // `copy` below).
        return unsafe { FrameBytes::mapped(seg, start, end - start) }
            .ok_or_else(|| corrupt(seg, start, "range outside the segment".into()));
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
    Ok(FrameBytes::copied(bytes))
}
