//! A committed record found in a segment: where it is and what its header says.

use std::sync::Arc;

use super::segment::Segment;

/// A committed record of a segment (made by [`super::walk::Walk::look`]).
///
/// Its fields are private and its only constructor is `unsafe`: [`RecordRef::payload`] hands out
/// a borrow of the shared mapping without any lock, which is sound only because the record was
/// proven committed (committed bytes are never written again, by any process) when it was made.
#[derive(Debug, Clone)]
pub(crate) struct RecordRef {
    seg: Arc<Segment>,
    pos: usize,
    seq: u64,
    len: usize,
    time: u64,
    crc: u32,
}

impl RecordRef {
    /// The record at `pos` of `seg`, with the fields its header holds.
    ///
    /// # Safety
    ///
    /// The caller acquire-loaded the header word at `pos` as COMMITTED with payload length `len`,
    /// and checked that `pos` and `len` lie inside the segment.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn committed(
        seg: Arc<Segment>,
        pos: usize,
        seq: u64,
        len: usize,
        time: u64,
        crc: u32,
    ) -> RecordRef {
        RecordRef {
            seg,
            pos,
            seq,
            len,
            time,
            crc,
        }
    }

    /// The payload, straight from the mapping (16-byte aligned).
    #[allow(unsafe_code)]
    pub(crate) fn payload(&self) -> &[u8] {
        // SAFETY: `committed`'s contract: the header word at `pos` was acquire-loaded as
        // COMMITTED with length `len`, and committed bytes never change. The borrow lives no
        // longer than `self`, whose `Arc<Segment>` keeps the mapping alive.
        unsafe { self.seg.payload(self.pos, self.len) }.unwrap_or(&[])
    }

    /// The segment that holds the record.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Offset of the record's header in its segment file.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The record's sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The payload's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The append time (nanoseconds since the Unix epoch) from the header.
    pub(crate) fn time(&self) -> u64 {
        self.time
    }

    /// The crc32c stored in the header.
    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }
}
