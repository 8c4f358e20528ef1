//! The election's side of the lease word that producers check (`journal/lease.rs`): the daemon
//! publishes the deadline of the lease it holds on a queue, so that every producer on the node
//! stops writing the moment the lease runs out.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::Result;
use crate::journal::{Journal, lease};
use crate::raw::clock;

/// A queue's lease word on this node, kept open by whoever runs the queue's election.
#[derive(Debug, Clone)]
pub struct QueueLease {
    journal: Arc<Journal>,
}

impl QueueLease {
    /// Opens the lease word of the queue in `dir`.
    ///
    /// # Errors
    ///
    /// The queue's meta file cannot be opened for writing.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(QueueLease {
            journal: Journal::open(dir, false)?,
        })
    }

    /// Producers may write until `deadline`; `None` revokes (they may not write at all).
    pub fn grant_until(&self, deadline: Option<Instant>) {
        lease::grant_until(&self.journal.meta, deadline.map(monotonic_nanos_of));
    }

    /// No lease is in force: producers are no longer limited by one (manual promotion, a daemon
    /// without an election).
    pub fn clear(&self) {
        lease::clear(&self.journal.meta);
    }

    /// Whether a lease is in force (granted or revoked) on the queue.
    #[must_use]
    pub fn in_force(&self) -> bool {
        lease::published(&self.journal.meta).is_some()
    }
}

/// Lifts the lease rule on the queue in `dir` if one is in force; nothing if the queue has no
/// meta file yet.
///
/// # Errors
///
/// The meta file exists but cannot be opened for writing.
pub fn clear_lease(dir: &Path) -> Result<()> {
    if !dir.join(crate::journal::format::META_FILE).exists() {
        return Ok(());
    }
    let lease = QueueLease::open(dir)?;
    if lease.in_force() {
        lease.clear();
    }
    Ok(())
}

/// `deadline` as nanoseconds of `CLOCK_MONOTONIC` (the clock `Instant` reads on Linux). The
/// clock is read before `Instant::now()`, so the result is never later than the true value.
fn monotonic_nanos_of(deadline: Instant) -> u64 {
    let mono = clock::monotonic_nanos();
    let now = Instant::now();
    match deadline.checked_duration_since(now) {
        Some(ahead) => mono.saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX)),
        None => mono.saturating_sub(
            u64::try_from(now.duration_since(deadline).as_nanos()).unwrap_or(u64::MAX),
        ),
    }
}
