//! Micro-benchmarks of repliq's typed byte path (divan): `cargo bench -p repliq-bench`.
//!
//! The driver binary measures the same four costs in its report; this is the tool for looking
//! closer (divan's sample statistics, `--sample-count`, filters by name).

use std::hint::black_box;
use std::mem::MaybeUninit;

/// Same shape as the driver's message: archived size = 24 + filler.
#[repliq::message(name = "bench.Msg")]
#[derive(Debug, Clone, PartialEq)]
pub struct BenchMsg {
    /// Timestamp.
    pub ts: u64,
    /// Sequence number.
    pub seq: u64,
    /// Filler.
    pub payload: Vec<u8>,
}

const SIZES: &[usize] = &[64, 1024, 16384];

fn msg(size: usize) -> BenchMsg {
    BenchMsg {
        ts: 1,
        seq: 2,
        payload: vec![0xA5; size - 24],
    }
}

fn main() {
    divan::main();
}

#[divan::bench(args = SIZES)]
fn serialize_into(bencher: divan::Bencher<'_, '_>, size: usize) {
    let m = msg(size);
    let mut slot: Vec<u128> = vec![0; size.div_ceil(16) + 16];
    let words = slot.as_mut_slice();
    // SAFETY: u128 storage viewed as bytes: same allocation, 16-byte aligned, `size_of_val`
    // bytes long; any byte is a valid `MaybeUninit<u8>`.
    let slot: &mut [MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), size_of_val(words)) };
    bencher.bench_local(|| repliq::serialize_into(black_box(&m), &mut *slot).is_ok());
}

#[divan::bench(args = SIZES)]
fn access(bencher: divan::Bencher<'_, '_>, size: usize) {
    let bytes = repliq::to_bytes(&msg(size)).expect("serializes");
    bencher.bench_local(|| repliq::access::<BenchMsg>(black_box(&bytes)).is_ok());
}

#[divan::bench(args = SIZES)]
fn access_unchecked(bencher: divan::Bencher<'_, '_>, size: usize) {
    let bytes = repliq::to_bytes(&msg(size)).expect("serializes");
    bencher.bench_local(|| {
        // SAFETY: `bytes` was produced by `repliq::to_bytes::<BenchMsg>` and is not modified.
        let a = unsafe { repliq::access_unchecked::<BenchMsg>(black_box(&bytes)) };
        a.seq.to_native()
    });
}

#[divan::bench(args = SIZES)]
fn deserialize(bencher: divan::Bencher<'_, '_>, size: usize) {
    let bytes = repliq::to_bytes(&msg(size)).expect("serializes");
    let archived = repliq::access::<BenchMsg>(&bytes).expect("valid");
    bencher.bench_local(|| repliq::deserialize::<BenchMsg>(black_box(archived)).is_ok());
}
