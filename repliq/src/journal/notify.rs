//! Waiting for new data (or for room) across processes: spin briefly, then sleep on a futex in
//! the meta file.
//!
//! Each direction has two words: a notify counter (the futex word) and a waiter word (bits 0..8:
//! number of sleepers, saturating at 255; bits 8..32: a lease stamp, the low 24 bits of
//! `CLOCK_MONOTONIC` milliseconds of the latest sleeper's announcement). Before each sleep a
//! waiter joins (count + 1, stamp = now), reads the counter, re-checks its condition and sleeps
//! while the counter is unchanged; after it, it leaves (count − 1). A producer that made progress
//! reads the waiter word after its commit and, only if someone waits, bumps the counter and issues
//! `FUTEX_WAKE`; the hot path without waiters pays one load. Both sides use sequentially
//! consistent operations, so either the producer sees the waiter or the waiter sees the new
//! record (no lost wake-up). Sleeps are capped at [`MAX_SLEEP`] as a safety net (e.g. a
//! reservation whose writer died needs a reader to abandon it).
//!
//! The stamp is a lease: a waiter killed while asleep leaves the count raised, but its stamp stops
//! being refreshed, and after [`WAITER_LEASE_MS`] producers ignore the count (no system call per
//! commit forever). Live sleepers re-announce at least every [`MAX_SLEEP`].

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::Result;
use crate::raw::futex;

/// Longest single futex sleep.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);
const SPINS: u32 = 2000;
const YIELDS: u32 = 20;

/// A sleeper announcement older than this is ignored by producers (its waiter died).
pub(crate) const WAITER_LEASE_MS: u32 = 1000;
const COUNT_MASK: u32 = 0xff;
const STAMP_MASK: u32 = 0x00ff_ffff;

fn stamp_now() -> u32 {
    crate::raw::clock::monotonic_millis() & STAMP_MASK
}

/// `true` if the waiter word announces a live sleeper.
pub(crate) fn has_waiters(word: u32) -> bool {
    if word & COUNT_MASK == 0 {
        return false;
    }
    let age = stamp_now().wrapping_sub(word >> 8) & STAMP_MASK;
    age <= WAITER_LEASE_MS
}

/// Announces a sleeper: count + 1 (saturating), stamp = now.
pub(crate) fn join(waiters: &AtomicU32) {
    let mut cur = waiters.load(Ordering::Relaxed);
    loop {
        let count = (cur & COUNT_MASK).saturating_add(1).min(COUNT_MASK);
        let new = (stamp_now() << 8) | count;
        match waiters.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Withdraws a sleeper announced by [`join`] (a saturated count stays saturated).
pub(crate) fn leave(waiters: &AtomicU32) {
    let mut cur = waiters.load(Ordering::Relaxed);
    loop {
        let count = cur & COUNT_MASK;
        if count == 0 || count == COUNT_MASK {
            return;
        }
        let new = (cur & !COUNT_MASK) | (count - 1);
        match waiters.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Called by a producer after a commit (or a consumer after freeing room).
#[inline]
pub(crate) fn wake(counter: &AtomicU32, waiters: &AtomicU32) {
    let w = waiters.load(Ordering::SeqCst);
    if w != 0 && has_waiters(w) {
        counter.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(counter);
    }
}

/// One announced sleep, the only way anyone sleeps on a notify counter: joins the waiters, reads
/// the counter, and sleeps (until a wake-up or `sleep`) only if `nothing_to_do` still says so
/// after that read; then leaves. Checking after the announcement is what makes a wake-up
/// impossible to miss: a producer that committed before the read is seen by `nothing_to_do`, one
/// that commits after it sees the announcement and bumps the counter. The caller checks again
/// afterwards (a return says nothing about why).
pub(crate) fn sleep_announced(
    counter: &AtomicU32,
    waiters: &AtomicU32,
    sleep: Duration,
    nothing_to_do: impl FnOnce() -> bool,
) {
    join(waiters);
    fence(Ordering::SeqCst);
    let seen = counter.load(Ordering::SeqCst);
    if nothing_to_do() {
        futex::wait(counter, seen, sleep);
    }
    leave(waiters);
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
        let mut early = None;
        sleep_announced(counter, waiters, sleep, || match ready() {
            Ok(None) => true,
            r => {
                early = Some(r);
                false
            }
        });
        if let Some(r) = early {
            return r;
        }
        if let Some(r) = ready()? {
            return Ok(Some(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiter_word_counts_and_expires() {
        let w = AtomicU32::new(0);
        assert!(!has_waiters(w.load(Ordering::SeqCst)));
        join(&w);
        join(&w);
        assert_eq!(w.load(Ordering::SeqCst) & COUNT_MASK, 2);
        assert!(has_waiters(w.load(Ordering::SeqCst)));
        leave(&w);
        assert!(has_waiters(w.load(Ordering::SeqCst)));
        leave(&w);
        assert!(!has_waiters(w.load(Ordering::SeqCst)), "nobody waits");
        leave(&w);
        assert_eq!(w.load(Ordering::SeqCst) & COUNT_MASK, 0, "no underflow");
        // A sleeper that died long ago: count 1, stamp 10 s old.
        let old = stamp_now().wrapping_sub(10_000) & STAMP_MASK;
        assert!(
            !has_waiters((old << 8) | 1),
            "a dead waiter's lease expired"
        );
        for _ in 0..300 {
            join(&w);
        }
        assert_eq!(
            w.load(Ordering::SeqCst) & COUNT_MASK,
            COUNT_MASK,
            "saturates"
        );
        leave(&w);
        assert_eq!(
            w.load(Ordering::SeqCst) & COUNT_MASK,
            COUNT_MASK,
            "stays saturated"
        );
    }
}
