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
//!
//! One file a job: [`frame`] (what crosses the wire), [`source`], [`sink`], [`move_aside`].

use std::sync::Arc;

use super::Journal;
use super::format::committed_extent;
use super::segment::Segment;
use crate::{QueueError, Result};

mod frame;
mod move_aside;
mod sink;
mod source;
#[cfg(all(test, not(loom)))]
mod test;

pub use frame::RecordId;
// The primary's and the replica's streaming side: used by `replication` (feature
// `replication`); the sink also by promotion, which is always there.
#[cfg_attr(not(feature = "replication"), allow(unused_imports))]
pub(crate) use frame::frame_records;
#[cfg_attr(not(feature = "replication"), allow(unused_imports))]
pub(crate) use move_aside::move_aside_from;
pub(crate) use sink::ByteSink;
#[cfg_attr(not(feature = "replication"), allow(unused_imports))]
pub(crate) use source::ByteSource;

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
    let mut reader = crate::journal::Reader::at(journal.clone(), next_seq - 1, false)?;
    match reader.peek()? {
        Some(rec) if rec.seq() == next_seq - 1 => {
            let end = rec.pos() + committed_extent(rec.len());
            Ok(Some((rec.segment().clone(), end)))
        }
        _ => Err(QueueError::protocol(format!(
            "{}: record {} is not in the journal (not written yet, or deleted by retention)",
            journal.dir.display(),
            next_seq - 1
        ))),
    }
}
