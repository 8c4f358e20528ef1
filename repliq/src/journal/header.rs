//! The record header word: the commit protocol.
//!
//! Every record starts with a 64-bit word that is the only thing readers trust. It moves through
//! these states, and only forwards (a final state is never changed):
//!
//! ```text
//!   EMPTY ──CAS──▶ RESERVED(extent, lease stamp) ──CAS──▶ COMMITTED(len)
//!                                                 ├─CAS──▶ ABANDONED(extent)
//!                                                 └─CAS──▶ END (of segment)
//! ```
//!
//! A writer wins a reservation by a compare-and-swap from EMPTY, writes its record inside the
//! reserved extent and publishes it with a release compare-and-swap to COMMITTED. Any process
//! that finds a reservation whose lease stamp is older than the lease timeout may turn it into
//! ABANDONED, with a compare-and-swap too. Exactly one of "commit" and "abandon" succeeds: a
//! stalled writer that resumes after being abandoned fails its commit, never writes outside its
//! own extent, and retries at the tail (OpenHFT/Chronicle-Queue#629 cannot happen). The next
//! record starts after the committed length (COMMITTED) or after the whole extent (ABANDONED).
//!
//! Encoding (bits 63..61 are the tag):
//!
//! | state     | tag | bits 60..32      | bits 31..0           |
//! |-----------|-----|------------------|----------------------|
//! | EMPTY     | 0   | 0                | 0                    |
//! | RESERVED  | 1   | extent / 16      | lease stamp (ms)     |
//! | COMMITTED | 2   | 0                | payload length       |
//! | ABANDONED | 3   | extent / 16      | 0                    |
//! | END       | 4   | 0                | 0                    |

use crate::sync::{Ordering, Word};

const TAG_SHIFT: u32 = 61;
const TAG_RESERVED: u64 = 1;
const TAG_COMMITTED: u64 = 2;
const TAG_ABANDONED: u64 = 3;
const TAG_END: u64 = 4;
const EXTENT_MASK: u64 = (1 << 29) - 1;

/// Largest extent a header word can describe.
pub(crate) const MAX_EXTENT: usize = (EXTENT_MASK as usize) * 16;

/// A decoded header word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    Reserved { extent: usize, stamp: u32 },
    Committed { len: u32 },
    Abandoned { extent: usize },
    End,
    Invalid(u64),
}

pub(crate) fn decode(word: u64) -> State {
    let tag = word >> TAG_SHIFT;
    let mid = (word >> 32) & EXTENT_MASK;
    let low = word as u32;
    match tag {
        0 if word == 0 => State::Empty,
        TAG_RESERVED => State::Reserved {
            extent: (mid as usize) * 16,
            stamp: low,
        },
        TAG_COMMITTED if mid == 0 => State::Committed { len: low },
        TAG_ABANDONED if low == 0 => State::Abandoned {
            extent: (mid as usize) * 16,
        },
        TAG_END if mid == 0 && low == 0 => State::End,
        _ => State::Invalid(word),
    }
}

/// The RESERVED word for `extent` bytes (a multiple of 16, at most [`MAX_EXTENT`]).
pub(crate) fn reserved(extent: usize, stamp: u32) -> u64 {
    (TAG_RESERVED << TAG_SHIFT) | (((extent / 16) as u64 & EXTENT_MASK) << 32) | u64::from(stamp)
}

pub(crate) fn committed(len: u32) -> u64 {
    (TAG_COMMITTED << TAG_SHIFT) | u64::from(len)
}

pub(crate) fn abandoned(extent: usize) -> u64 {
    (TAG_ABANDONED << TAG_SHIFT) | (((extent / 16) as u64 & EXTENT_MASK) << 32)
}

pub(crate) const END: u64 = TAG_END << TAG_SHIFT;

/// True if a reservation stamped `stamp` has outlived `lease_ms` at time `now` (both from
/// [`crate::raw::clock::monotonic_millis`]). A stamp from the future (another boot) counts as
/// expired.
pub(crate) fn lease_expired(stamp: u32, now: u32, lease_ms: u32) -> bool {
    let age = now.wrapping_sub(stamp);
    age > lease_ms && age != 0
}

/// Tries to reserve an EMPTY header. Returns the reserved word on success, the current word on
/// failure.
pub(crate) fn try_reserve<W: Word + ?Sized>(
    word: &W,
    extent: usize,
    stamp: u32,
) -> Result<u64, u64> {
    let new = reserved(extent, stamp);
    word.compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| new)
}

/// Publishes a record: RESERVED → COMMITTED. `false` if the reservation was abandoned meanwhile
/// (the caller then must not touch the extent's successor and retries at the tail).
///
/// `SeqCst` so that a following load of the waiter count cannot be ordered before it (the
/// futex wake-up handshake, see `journal::notify`).
pub(crate) fn commit<W: Word + ?Sized>(word: &W, reserved_word: u64, len: u32) -> bool {
    word.compare_exchange(
        reserved_word,
        committed(len),
        Ordering::SeqCst,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Gives up a reservation (its own or an expired one): RESERVED → ABANDONED with the same extent.
pub(crate) fn abandon<W: Word + ?Sized>(word: &W, reserved_word: u64) -> bool {
    let State::Reserved { extent, .. } = decode(reserved_word) else {
        return false;
    };
    word.compare_exchange(
        reserved_word,
        abandoned(extent),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Ends the segment at this record: RESERVED → END.
pub(crate) fn end_segment<W: Word + ?Sized>(word: &W, reserved_word: u64) -> bool {
    word.compare_exchange(reserved_word, END, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        assert_eq!(decode(0), State::Empty);
        assert_eq!(
            decode(reserved(4096, 77)),
            State::Reserved {
                extent: 4096,
                stamp: 77
            }
        );
        assert_eq!(decode(committed(0)), State::Committed { len: 0 });
        assert_eq!(
            decode(committed(u32::MAX)),
            State::Committed { len: u32::MAX }
        );
        assert_eq!(decode(abandoned(48)), State::Abandoned { extent: 48 });
        assert_eq!(decode(END), State::End);
        assert_eq!(decode(u64::MAX), State::Invalid(u64::MAX));
        assert_eq!(decode(5 << 61), State::Invalid(5 << 61));
        assert_ne!(
            committed(0),
            0,
            "a committed empty payload must not look EMPTY"
        );
    }

    #[test]
    fn commit_and_abandon_are_exclusive() {
        let w = std::sync::atomic::AtomicU64::new(0);
        let r = try_reserve(&w, 64, 1).unwrap();
        assert_eq!(try_reserve(&w, 64, 1), Err(r), "a second reservation fails");
        assert!(abandon(&w, r));
        assert!(!commit(&w, r, 10), "commit after abandonment must fail");
        assert_eq!(
            decode(w.load(Ordering::Acquire)),
            State::Abandoned { extent: 64 }
        );

        let w = std::sync::atomic::AtomicU64::new(0);
        let r = try_reserve(&w, 64, 1).unwrap();
        assert!(commit(&w, r, 10));
        assert!(!abandon(&w, r), "abandon after commit must fail");
        assert!(!end_segment(&w, r));
        assert_eq!(
            decode(w.load(Ordering::Acquire)),
            State::Committed { len: 10 }
        );
    }

    #[test]
    fn leases_expire() {
        assert!(!lease_expired(100, 150, 200));
        assert!(lease_expired(100, 301, 200));
        assert!(lease_expired(u32::MAX - 10, 500, 200), "wraps");
        assert!(!lease_expired(u32::MAX - 10, 5, 200), "wraps");
        assert!(
            lease_expired(1000, 999, 200),
            "a stamp from the future is expired"
        );
    }
}
