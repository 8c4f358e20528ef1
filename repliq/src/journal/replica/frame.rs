//! What replication carries: frames of journal bytes and the records inside them.

use std::sync::Arc;

use crate::journal::format::*;
use crate::journal::header::{self, State};
use crate::journal::segment::Segment;

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
///
/// Its representation is private: a mapped range can be made only through the `unsafe`
/// [`FrameBytes::mapped`], whose caller proves the range final, so the safe [`AsRef`] below is
/// sound for every caller.
#[derive(Clone)]
pub(crate) struct FrameBytes(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of the segment's mapping at `offset`: final entries, which nobody writes again.
    Mapped {
        seg: Arc<Segment>,
        offset: usize,
        len: usize,
    },
    Copied(Vec<u8>),
}

impl FrameBytes {
    /// `len` bytes of `seg`'s mapping at `offset`, without a copy; `None` if the range does not
    /// lie inside the segment.
    ///
    /// # Safety
    ///
    /// Every entry in the range was acquire-loaded as final (committed records, an END marker
    /// with the rest of its segment): nobody in any process writes those bytes again.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn mapped(seg: &Arc<Segment>, offset: usize, len: usize) -> Option<Self> {
        // SAFETY: the caller's guarantee; the borrow ends here (only the bounds are checked).
        unsafe { seg.map.committed(offset, len) }?;
        Some(FrameBytes(Repr::Mapped {
            seg: seg.clone(),
            offset,
            len,
        }))
    }

    /// Bytes copied out of the journal (or received).
    pub(crate) fn copied(bytes: Vec<u8>) -> Self {
        FrameBytes(Repr::Copied(bytes))
    }
}

impl AsRef<[u8]> for FrameBytes {
    #[allow(unsafe_code)]
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Repr::Mapped { seg, offset, len } => {
                // SAFETY: only `mapped` makes this variant, whose caller proved every entry of
                // the range final: nobody in any process writes it again. The borrow lives no
                // longer than `self`, whose `Arc<Segment>` keeps the mapping alive (a segment
                // file is never truncated while mapped). The bounds were checked in `mapped`.
                unsafe { seg.map.committed(*offset, *len) }.unwrap_or_default()
            }
            Repr::Copied(v) => v,
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
        match &self.0 {
            Repr::Mapped { seg, offset, len } => f
                .debug_struct("Mapped")
                .field("segment", &seg.first_seq)
                .field("offset", offset)
                .field("len", len)
                .finish(),
            Repr::Copied(v) => f.debug_tuple("Copied").field(&v.len()).finish(),
        }
    }
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
