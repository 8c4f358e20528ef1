//! The dead-letter queue: a repliq queue of [`DeadLetter`] records. The format lives in the
//! `repliq` library ([`repliq::dead_letter`]), shared with the daemon's remote consumers.

pub use repliq::dead_letter::{DeadLetter, DeadLetters};

pub(crate) fn now_nanos() -> u64 {
    repliq::dead_letter::now_unix_nanos()
}
