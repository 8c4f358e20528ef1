//! The hash behind every fingerprint.

/// A `const` FNV-1a 64 hasher over the item stream documented in `repliq::fingerprint`.
///
/// ```
/// use repliq_types::Hasher;
/// const FP: u64 = Hasher::new().str("u32").finish();
/// assert_eq!(FP, repliq_types::Type::U32.fingerprint());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hasher(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Hasher {
    /// A hasher in its initial state.
    #[must_use]
    pub const fn new() -> Self {
        Hasher(FNV_OFFSET)
    }

    /// Adds `bytes` as they are (no length prefix): the FNV-1a step itself. The fingerprint's
    /// items are [`u64`](Self::u64) and [`str`](Self::str).
    #[must_use]
    pub const fn raw_bytes(mut self, bytes: &[u8]) -> Self {
        let mut i = 0;
        while i < bytes.len() {
            self.0 ^= bytes[i] as u64;
            self.0 = self.0.wrapping_mul(FNV_PRIME);
            i += 1;
        }
        self
    }

    /// Adds `x` as 8 little-endian bytes.
    #[must_use]
    pub const fn u64(self, x: u64) -> Self {
        self.raw_bytes(&x.to_le_bytes())
    }

    /// Adds the length of `s` (as [`u64`](Self::u64)) and then its UTF-8 bytes.
    #[must_use]
    pub const fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw_bytes(s.as_bytes())
    }

    /// The hash.
    #[must_use]
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}
