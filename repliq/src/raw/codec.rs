//! Unchecked access to archived messages.

use crate::message::{Archived, Message};

/// Returns the archived message in `bytes` without validating it.
///
/// This is the fast path for bytes that are already known to be valid (validated once before, or
/// written by this process). In debug builds, the alignment and minimum length are still checked
/// with `debug_assert!`.
///
/// # Safety
///
/// `bytes` must be exactly the bytes of a valid archived `T` as written by
/// [`serialize_into`](crate::serialize_into) or [`to_bytes`](crate::to_bytes) for the same `T`
/// (same [`Fingerprint::FINGERPRINT`](crate::Fingerprint::FINGERPRINT)), starting at a multiple of
/// [`PAYLOAD_ALIGN`](crate::PAYLOAD_ALIGN), and they must not change while the returned
/// reference lives. [`access`](crate::access) checks all of this and is the safe alternative.
pub unsafe fn access_unchecked<T: Message>(bytes: &[u8]) -> &Archived<T> {
    debug_assert!(
        bytes.is_empty() || (bytes.as_ptr() as usize).is_multiple_of(crate::PAYLOAD_ALIGN),
        "misaligned message bytes"
    );
    debug_assert!(
        bytes.len() >= size_of::<Archived<T>>(),
        "message bytes shorter than the archived root"
    );
    // SAFETY: the caller guarantees that `bytes` hold a valid, aligned archived `T` that does not
    // change while borrowed, which is exactly rkyv's contract for `access_unchecked`.
    unsafe { rkyv::access_unchecked::<Archived<T>>(bytes) }
}
