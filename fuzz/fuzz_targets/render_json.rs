//! The descriptor → JSON renderer (what `repliq cat`, the HTTP API and the connectors show) on
//! arbitrary record bytes. The input is a descriptor in JSON, a NUL byte, then the payload; the
//! renderer validates the payload against the descriptor and renders it or gives a
//! `RenderError`, never a panic or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repliq::descriptor::{Type, to_json};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let Ok(ty) = serde_json::from_slice::<Type>(&data[..split]) else {
        return;
    };
    // Offsets and alignment are checked relative to the payload's start, as in a segment.
    let _ = to_json(&ty, &data[split + 1..]);
});
