//! The primary's durable cursor per replica, so that retention keeps what a replica still needs.
//!
//! Each configured replica has a cursor `replica:<node>` in the queue's meta file (flag
//! `FLAG_REPLICA`: it holds back retention, never producers). It holds the sequence number of
//! the last record the replica acknowledged as durable, so `Journal::purge_consumed` keeps the
//! segment holding that record (whose END marker the replica may still lack) and everything
//! after it. A replica that never subscribed holds everything that was stored when its cursor
//! was made.
//!
//! A replica further behind than `max_lag_segments` segments is **lost**: its cursor is parked
//! at `RELEASED` (it holds back nothing), a warning names it, and the observer is told. A lost
//! replica that comes back resyncs (the primary sends whole segments from its oldest on) and
//! takes its cursor back once it is within half the bound, so it does not flap at the edge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ReplicaAddr, ReplicationObserver};
use crate::Result;
use crate::journal::Journal;
use crate::journal::cursor::{self, RELEASED};

/// The replica cursors of one queue on its primary.
#[derive(Debug)]
pub(crate) struct ReplicaCursors {
    journal: Arc<Journal>,
    queue: String,
    /// Replica name → cursor slot.
    slots: BTreeMap<String, usize>,
    max_lag_segments: Option<u64>,
}

impl ReplicaCursors {
    /// Finds or registers the cursor of every replica (a new one at the oldest stored record).
    pub(crate) fn register(
        journal: Arc<Journal>,
        queue: &str,
        replicas: &[ReplicaAddr],
        max_lag_segments: Option<u64>,
    ) -> Result<ReplicaCursors> {
        let mut slots = BTreeMap::new();
        for replica in replicas {
            let j = journal.clone();
            let slot =
                cursor::register_replica(&journal.meta, &replica.name, move || j.earliest_seq())?;
            slots.insert(replica.name.clone(), slot);
        }
        Ok(ReplicaCursors {
            journal,
            queue: queue.to_owned(),
            slots,
            max_lag_segments,
        })
    }

    /// Replica `name` holds every record before `next_seq` durably: its cursor moves forward
    /// (never back), or, if the replica was lost and is now within half the bound, it is taken
    /// back at that position.
    pub(crate) fn held(&self, name: &str, next_seq: u64) {
        let Some(&slot) = self.slots.get(name) else {
            return;
        };
        let word = self.journal.meta.cursor_next(slot);
        let pos = next_seq.saturating_sub(1);
        if word.load(Ordering::Acquire) != RELEASED {
            word.fetch_max(pos, Ordering::AcqRel);
            return;
        }
        let Ok(segments) = self.journal.list_segments() else {
            return;
        };
        let lag = segments_after(&segments, pos);
        let near = self.max_lag_segments.is_none_or(|max| lag <= max / 2);
        if near
            && word
                .compare_exchange(RELEASED, pos, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::info!(queue = %self.queue, replica = %name, next_seq, "lost replica is back; retention keeps its segments again");
        }
    }

    /// Declares every replica lost whose cursor is more than the bound behind: its cursor is
    /// released, so retention proceeds. `committed` is one past the last local record (for the
    /// lag in records that the log line gives).
    pub(crate) fn check(&self, committed: u64, observer: Option<&Arc<dyn ReplicationObserver>>) {
        let Some(max) = self.max_lag_segments else {
            return;
        };
        let Ok(segments) = self.journal.list_segments() else {
            return;
        };
        for (name, &slot) in &self.slots {
            let word = self.journal.meta.cursor_next(slot);
            let pos = word.load(Ordering::Acquire);
            if pos == RELEASED {
                continue;
            }
            let lag = segments_after(&segments, pos);
            if lag <= max {
                continue;
            }
            if word
                .compare_exchange(pos, RELEASED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // it moved meanwhile; looked at again next time
            }
            let records = committed.saturating_sub(pos.saturating_add(1));
            tracing::warn!(
                queue = %self.queue,
                replica = %name,
                lag_segments = lag,
                lag_records = records,
                max_lag_segments = max,
                "replica lost: it is too far behind; retention no longer keeps segments for it \
                 (it resyncs in full when it is back)"
            );
            if let Some(m) = observer {
                m.replica_lost(&self.queue, name, lag, records);
            }
        }
    }
}

/// How many of `segments` (first sequence numbers, ascending) start after record `pos`: the
/// segments retention keeps for a replica beyond the one holding its last record.
fn segments_after(segments: &[u64], pos: u64) -> u64 {
    segments.iter().filter(|&&s| s > pos).count() as u64
}
