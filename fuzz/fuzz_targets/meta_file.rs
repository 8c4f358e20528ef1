//! `queue.meta` from a damaged disk: the input replaces the meta file of a real queue (three
//! segments of records, two consumers), then the queue is opened every way a program or tool
//! does (`inspect`, `verify`, `consumer_slots`, `RawTailer`, `Tailer`, consumers, a producer,
//! `ReplicationState::load` of its policy words) and read to the end. Each step gives `Ok` or a
//! typed `QueueError`; none panics, loops or reads out of bounds.
//!
//! Input: one flag byte (`recovery::meta`: fix the header checksum, trim), then the file's bytes,
//! written over the template's (8 KiB: header, policy words, 64 consumer cursor slots).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod recovery;
use recovery::{meta, overlay, scratch, template};

/// Offset of the header checksum in the meta file (docs/FORMAT.md: crc32c of bytes 0..320).
const M_CRC: usize = 320;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let s = scratch();
    let mut bytes = overlay(template().file("queue.meta"), body, flags & meta::TRIM != 0);
    if flags & meta::FIX_CRC != 0 {
        recovery::fix_crc(&mut bytes, M_CRC);
    }
    std::fs::write(s.dir.join("queue.meta"), &bytes).expect("writing the meta file");
    // Without `replication.json` the state comes from the meta file's policy words.
    if flags & 4 != 0 {
        let _ = std::fs::remove_file(s.dir.join(repliq::replication::STATE_FILE));
    }
    recovery::exercise(&s.dir, true);
});
