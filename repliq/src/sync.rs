//! Concurrency primitives, chosen by `cfg(repliq_loom)`: std normally, loom's models under
//! `RUSTFLAGS="--cfg repliq_loom"`, so the record-header and cursor protocols can be model-checked.
//!
//! Words inside a shared file mapping are always `std` atomics (they come from raw pointers);
//! the protocol code is written against [`Word`] so the same functions run on both.

pub(crate) use std::sync::atomic::Ordering;

/// The operations the journal protocols need on a 64-bit shared word.
pub(crate) trait Word {
    #[cfg_attr(not(repliq_loom), allow(dead_code))]
    fn load(&self, order: Ordering) -> u64;
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

impl Word for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::load(self, order)
    }
    #[inline]
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        std::sync::atomic::AtomicU64::compare_exchange(self, current, new, success, failure)
    }
}

#[cfg(repliq_loom)]
impl Word for loom::sync::atomic::AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        loom::sync::atomic::AtomicU64::load(self, order)
    }
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        loom::sync::atomic::AtomicU64::compare_exchange(self, current, new, success, failure)
    }
}
