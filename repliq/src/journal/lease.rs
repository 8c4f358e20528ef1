//! The primary's lease as producers see it: a deadline in the queue's meta file that every
//! append checks, so a primary whose lease has run out stops taking writes at once, and not only
//! once its daemon notices.
//!
//! Why the write path checks it: a primary paused past its lease (`docker pause`, a frozen VM,
//! `SIGSTOP`) resumes with its producers' threads and its daemon's at the same instant. Without
//! the check, producers of an asynchronous queue append (and are told `Ok`) in the milliseconds
//! before the daemon's election round sees that the lease is gone and fences the queue, while a
//! newer primary already acknowledges writes: a split brain (found by the fault schedules,
//! docs/CHECKER.md). The monotonic clock keeps running while a process is stopped, so a resumed
//! producer sees at once that the deadline has passed.
//!
//! The words (docs/FORMAT.md): `lease_until` at 544 — 0 when no lease is in force (no election
//! manages the queue: the rule does not apply), 1 when revoked, otherwise the `CLOCK_MONOTONIC`
//! nanosecond until which producers may write; `lease_boot` at 552 — the boot the deadline was
//! computed in (the monotonic clock starts again at boot, so a deadline of another boot counts
//! as run out). The election writes the boot, then the deadline (release); producers load the
//! deadline (acquire), then the boot. On the hot path a queue without an election pays one load;
//! with one, two loads and a read of the coarse monotonic clock (a few ns from the vDSO), which
//! may lag the precise clock by a tick: its resolution is added before comparing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::meta::Meta;
use crate::raw::clock;

/// `lease_until` when no lease is in force: writes are not limited by a lease.
pub(crate) const NO_LEASE: u64 = 0;
/// `lease_until` when the lease is revoked (this node does not hold it).
pub(crate) const REVOKED: u64 = 1;

/// Why the lease does not allow a write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The node does not hold the lease (revoked, or never granted since the daemon started).
    Revoked,
    /// The deadline passed this long ago.
    RanOut(Duration),
    /// The deadline was written in another boot of the machine.
    OtherBoot,
}

/// `Ok` if producers may write now.
#[inline]
pub(crate) fn check(meta: &Meta) -> Result<(), Expired> {
    let until = meta.lease_until().load(Ordering::Acquire);
    if until == NO_LEASE {
        return Ok(());
    }
    check_deadline(meta, until)
}

#[inline(never)]
fn check_deadline(meta: &Meta, until: u64) -> Result<(), Expired> {
    if until == REVOKED {
        return Err(Expired::Revoked);
    }
    if meta.lease_boot().load(Ordering::Acquire) != clock::boot_id() {
        return Err(Expired::OtherBoot);
    }
    let now = clock::monotonic_coarse_nanos().saturating_add(clock::monotonic_coarse_lag_nanos());
    if now >= until {
        return Err(Expired::RanOut(Duration::from_nanos(now - until)));
    }
    Ok(())
}

/// Publishes a deadline: `Some(nanos)` of `CLOCK_MONOTONIC`, `None` to revoke.
pub(crate) fn grant_until(meta: &Meta, deadline: Option<u64>) {
    let until = deadline.map_or(REVOKED, |d| d.max(REVOKED + 1));
    meta.lease_boot().store(clock::boot_id(), Ordering::Release);
    meta.lease_until().store(until, Ordering::Release);
}

/// Lifts the rule: no lease is in force (manual promotion, a daemon without an election).
pub(crate) fn clear(meta: &Meta) {
    meta.lease_until().store(NO_LEASE, Ordering::Release);
}

/// The deadline as published: `None` when no lease is in force.
pub(crate) fn published(meta: &Meta) -> Option<u64> {
    match meta.lease_until().load(Ordering::Acquire) {
        NO_LEASE => None,
        until => Some(until),
    }
}
