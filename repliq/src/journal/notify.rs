//! Waiting for new data (or for room) across processes: spin briefly, then sleep on a futex in
//! the meta file.
//!
//! Each direction has two words: a notify counter (the futex word) and a waiter count. A waiter
//! increments the waiter count, reads the counter, re-checks its condition and sleeps while the
//! counter is unchanged. A producer that made progress reads the waiter count after its commit
//! and, only if someone waits, bumps the counter and issues `FUTEX_WAKE`; the hot path without
//! waiters pays one load. Both sides use sequentially consistent operations, so either the
//! producer sees the waiter or the waiter sees the new record (no lost wake-up). Sleeps are
//! capped at [`MAX_SLEEP`] as a safety net (e.g. a reservation whose writer died needs a reader to
//! abandon it).
//!
//! Known limitation: a waiter killed while asleep leaves the waiter count raised, so producers
//! keep paying one `FUTEX_WAKE` system call per commit (still correct, slower). A lease on the
//! waiter word, like the record reservations have, would bound that.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::Result;
use crate::raw::futex;

/// Longest single futex sleep.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);
const SPINS: u32 = 2000;
const YIELDS: u32 = 20;

/// Called by a producer after a commit (or a consumer after freeing room).
#[inline]
pub(crate) fn wake(counter: &AtomicU32, waiters: &AtomicU32) {
    if waiters.load(Ordering::SeqCst) != 0 {
        counter.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(counter);
    }
}

/// Waits until `ready` returns `Some`, or until `deadline`. `Ok(None)` on timeout.
pub(crate) fn wait_until<R>(
    counter: &AtomicU32,
    waiters: &AtomicU32,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Result<Option<R>>,
) -> Result<Option<R>> {
    for i in 0..SPINS + YIELDS {
        if let Some(r) = ready()? {
            return Ok(Some(r));
        }
        if i < SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    loop {
        let sleep = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return ready();
                }
                (d - now).min(MAX_SLEEP)
            }
            None => MAX_SLEEP,
        };
        waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let seen = counter.load(Ordering::SeqCst);
        let r = ready();
        if !matches!(r, Ok(None)) {
            waiters.fetch_sub(1, Ordering::SeqCst);
            return r;
        }
        futex::wait(counter, seen, sleep);
        waiters.fetch_sub(1, Ordering::SeqCst);
        if let Some(r) = ready()? {
            return Ok(Some(r));
        }
    }
}
