//! A replica walks the record headers of every frame a primary sends: arbitrary bytes give the
//! records or a framing error, never a panic or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = repliq::__fuzz::frame_records(data) {
        // Each record takes at least a header (16 bytes).
        assert!(n <= data.len() / 16, "{n} records in {} bytes", data.len());
    }
});
