//! Segment recovery on a damaged disk: the input replaces (or trims, or adds) a segment file of a
//! real queue, then the queue is opened every way a program or tool does and read to the end:
//! the tools' walks (`inspect`'s tail search, `verify`'s full walk with checksums), tailers and
//! consumers (the reader's hole checks, index lookups, payload validation), and a producer (the
//! appender's recovery: the segment chain check, the tail search from the last index point, the
//! torn-record and hole detection, then appends at the tail it found). Each step gives `Ok` or a
//! typed `QueueError`; none panics, loops or reads out of bounds (no SIGBUS: every file mapped is
//! checked to have the segment size first). What `verify` passes, a raw tailer reads whole.
//!
//! Input: one flag byte (`recovery::segment`: which segment, fix the header checksum, trim, fix
//! the record checksums, delete the next segment), then the file's bytes, written over the
//! template's segment (4 KiB: header, sparse index, records).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod recovery;
use recovery::{overlay, scratch, segment, template};

/// Offset of the segment header's checksum (crc32c of bytes 0..48) and of its data start field.
const S_CRC: usize = 48;
const S_DATA_START: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let t = template();
    let segs = t.segments();
    let which = usize::from(flags & segment::WHICH);
    let s = scratch();
    let (name, base) = match segs.get(which) {
        Some(name) => (name.clone(), t.file(name).to_vec()),
        // A new segment after the last: named by a sequence number a little past the last
        // segment's first one, written over zeros.
        None => {
            let last: u64 = segs[segs.len() - 1][..20].parse().expect("a segment name");
            let first = last + u64::from(body.first().copied().unwrap_or(0));
            (
                format!("{first:020}.seg"),
                vec![0u8; recovery::SEGMENT as usize],
            )
        }
    };
    let mut bytes = overlay(&base, body, flags & segment::TRIM != 0);
    if flags & segment::FIX_RECORD_CRCS != 0 {
        let start = u32::from_le_bytes(base[S_DATA_START..S_DATA_START + 4].try_into().unwrap());
        let start = if start == 0 { 192 } else { start as usize };
        recovery::fix_record_crcs(&mut bytes, start);
    }
    if flags & segment::FIX_HEADER_CRC != 0 {
        recovery::fix_crc(&mut bytes, S_CRC);
    }
    std::fs::write(s.dir.join(&name), &bytes).expect("writing the segment");
    if flags & segment::DELETE_NEXT != 0
        && let Some(next) = segs.get(which + 1)
    {
        std::fs::remove_file(s.dir.join(next)).expect("deleting the next segment");
    }
    recovery::exercise(&s.dir, true);
});
