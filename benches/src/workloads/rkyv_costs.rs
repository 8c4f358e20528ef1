//! The cost of repliq's typed byte path on one core, without a queue: serialize into an aligned
//! slot, validated access, unchecked access, full deserialize. Bounded loops timed as a whole.

use std::mem::MaybeUninit;

use crate::BoxResult;
use crate::clock::now_ns;
use crate::msg::BenchMsg;

/// Nanoseconds per operation for one message size.
#[derive(Debug, Clone, Copy)]
pub struct Costs {
    /// `repliq::serialize_into` into a reused aligned slot.
    pub serialize_into: f64,
    /// `repliq::access` (validated).
    pub access: f64,
    /// `repliq::access_unchecked`.
    pub access_unchecked: f64,
    /// `repliq::deserialize` back into an owned value.
    pub deserialize: f64,
}

fn per_op(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    // Warm up, then time the whole loop.
    for i in 0..iters / 10 + 1 {
        f(i);
    }
    let t0 = now_ns();
    for i in 0..iters {
        f(i);
    }
    (now_ns() - t0) as f64 / iters as f64
}

/// Measures the four costs for a message whose archived size is `size`.
pub fn measure(size: usize, iters: u64) -> BoxResult<Costs> {
    let mut msg = BenchMsg::of_size(size);
    let bytes = repliq::to_bytes(&msg)?;
    // A 16-byte-aligned slot, as in the journal.
    let mut slot: Vec<u128> = vec![0; size.div_ceil(16) + 16];
    let serialize_into = {
        let words = slot.as_mut_slice();
        // SAFETY: u128 storage reinterpreted as bytes: same memory, alignment 16 ≥ 1, length
        // in bytes is 16× the element count; every byte pattern is a valid MaybeUninit<u8>.
        let slot: &mut [MaybeUninit<u8>] = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), size_of_val(words))
        };
        let mut failed = None;
        let ns = per_op(iters, |i| {
            msg.seq = i;
            if let Err(e) = repliq::serialize_into(&msg, slot) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        ns
    };
    let access = per_op(iters, |_| {
        std::hint::black_box(repliq::access::<BenchMsg>(std::hint::black_box(&bytes)).is_ok());
    });
    let access_unchecked = per_op(iters, |_| {
        // SAFETY: `bytes` came from `repliq::to_bytes::<BenchMsg>` and is not modified.
        let a = unsafe { repliq::access_unchecked::<BenchMsg>(std::hint::black_box(&bytes)) };
        std::hint::black_box(a.seq.to_native());
    });
    let archived = repliq::access::<BenchMsg>(&bytes)?;
    let deserialize = per_op(iters, |_| {
        std::hint::black_box(repliq::deserialize::<BenchMsg>(std::hint::black_box(archived)).ok());
    });
    Ok(Costs {
        serialize_into,
        access,
        access_unchecked,
        deserialize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_size() {
        for size in [64, 1024] {
            let c = measure(size, 10).unwrap();
            assert!(c.serialize_into > 0.0 && c.deserialize > 0.0);
        }
    }
}
