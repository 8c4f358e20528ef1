//! Shared helpers and fixture types for repliq's cross-crate tests.

pub mod kitchen_sink;

/// A message defined in this crate; `tests/message_fingerprint.rs` defines an identical twin in
/// another crate and checks that both have the same fingerprint.
#[repliq::message(name = "fixture.Order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Client order id.
    pub id: u64,
    /// Instrument.
    pub symbol: String,
    /// Limit price in ticks; `None` for a market order.
    pub price: Option<i64>,
    /// Quantities per venue.
    pub legs: Vec<(u32, u64)>,
}

/// A 16-byte aligned scratch slot for serializer tests.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct AlignedSlot<const N: usize>(pub [std::mem::MaybeUninit<u8>; N]);

impl<const N: usize> AlignedSlot<N> {
    /// An uninitialised slot.
    #[must_use]
    pub fn new() -> Self {
        AlignedSlot([std::mem::MaybeUninit::uninit(); N])
    }
}

impl<const N: usize> Default for AlignedSlot<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the README's Rust examples as doctests, so the front page cannot drift from the code.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
