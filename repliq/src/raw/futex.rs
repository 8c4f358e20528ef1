//! Cross-process futex wait and wake on a word of a shared file mapping.
//!
//! Unlike std's internal futex and the `atomic-wait` crate, these calls do **not** pass
//! `FUTEX_PRIVATE_FLAG`: the kernel then keys the wait queue by the backing file page rather than
//! by the process's address space, so a `FUTEX_WAKE` from one process wakes waiters in another
//! (and in other containers that map the same file).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns early on a wake-up, a signal,
/// or if the word already differs. Spurious returns are allowed: callers re-check their condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `word` is a valid, aligned, live `u32` (a reference); FUTEX_WAIT only reads it and
    // the timespec is a valid relative timeout that outlives the call. Errors (EAGAIN when the
    // value changed, EINTR, ETIMEDOUT) are all "return and re-check" for the caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every waiter sleeping on `word`, in any process.
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned, live `u32`; FUTEX_WAKE does not access user memory
    // beyond using the address as a key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}
