//! crc32c of a record, with the SSE 4.2 `crc32` instruction inlined into the caller's loop.
//!
//! The `crc32c` crate does use the hardware instruction (it checks `cpuid` at run time), but a
//! record checksum through it is two out-of-line calls (the 20 header bytes are first copied
//! into a byte array, then the payload is appended), each splitting its input into unaligned
//! head, aligned middle and tail and choosing between three loops: about 260 instructions for a
//! 64-byte message, most of them bookkeeping around ~11 `crc32` instructions. Here the header
//! fields go straight into three `crc32` instructions and a payload (16-byte aligned in the
//! journal) is consumed 8 bytes per instruction. Payloads of [`PARALLEL_FROM`] bytes or more go
//! to the crate, whose three interleaved streams hide the instruction's 3-cycle latency.
//!
//! The value is exactly the crate's `crc32c_append(crc32c(seq ‖ len ‖ time), payload)` (tested
//! below), so the on-disk format does not change.

/// From this payload length on, the crate's 3-way interleaved loop is faster than one stream.
const PARALLEL_FROM: usize = 512;

/// crc32c over (sequence u64, length u32, time u64, little-endian) and then `payload`.
#[inline]
pub(crate) fn record_crc(seq: u64, len: u32, time: u64, payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2 (checked just above), which is all that
            // `record_crc_sse42` requires; it reads only `payload`, through safe slices.
            return unsafe { record_crc_sse42(seq, len, time, payload) };
        }
    }
    record_crc_portable(seq, len, time, payload)
}

/// The crate's implementation (software tables, or hardware through its own detection).
fn record_crc_portable(seq: u64, len: u32, time: u64, payload: &[u8]) -> u32 {
    let mut head = [0u8; 20];
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    head[12..20].copy_from_slice(&time.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// # Safety
///
/// The CPU must support SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn record_crc_sse42(seq: u64, len: u32, time: u64, payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64};
    // The `crc32` instruction consumes its operand's bytes in little-endian order, so one
    // instruction per field is the crc of the field's little-endian bytes.
    let mut state = u64::from(u32::MAX);
    state = _mm_crc32_u64(state, seq);
    state = u64::from(_mm_crc32_u32(state as u32, len));
    state = _mm_crc32_u64(state, time);
    if payload.len() >= PARALLEL_FROM {
        return crc32c::crc32c_append(!(state as u32), payload);
    }
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        state = _mm_crc32_u64(state, u64::from_le_bytes(b));
    }
    let mut s = state as u32;
    for &b in words.remainder() {
        s = _mm_crc32_u8(s, b);
    }
    !s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crate_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..2100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..80).chain([511, 512, 513, 1024, 2047]) {
            for off in 0..3 {
                let p = &data[off..off + len];
                let (seq, l, t) = (
                    0x0102_0304_0506_0708 + len as u64,
                    len as u32,
                    42 + off as u64,
                );
                assert_eq!(
                    record_crc(seq, l, t, p),
                    record_crc_portable(seq, l, t, p),
                    "len {len} offset {off}"
                );
            }
        }
    }

    #[test]
    fn known_value() {
        // crc32c of 20 zero bytes followed by "123456789".
        let mut all = vec![0u8; 20];
        all.extend_from_slice(b"123456789");
        assert_eq!(record_crc(0, 0, 0, b"123456789"), crc32c::crc32c(&all));
    }
}
