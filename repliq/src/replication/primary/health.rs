//! Lag and replica health, reported to the observer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ReplicaHealth, ReplicaLink};
use crate::journal::{Journal, Reader};
use crate::replication::{Leader, PrimaryOptions};

/// Reports lag, replica health and the quorum to the observer. A replica is *up* while its
/// stream is open and its oldest unacknowledged frame is younger than the acknowledgement
/// timeout (a stopped or wedged replica keeps its TCP connection but is not up).
pub(super) fn report_health(
    journal: &Arc<Journal>,
    queue: &str,
    leader: &Leader,
    links: &BTreeMap<String, ReplicaLink>,
    health: &mut BTreeMap<String, ReplicaHealth>,
    options: &PrimaryOptions,
) {
    let Some(m) = &options.observer else {
        return;
    };
    let now = Instant::now();
    let committed = leader.next_seq();
    let lags = leader.lag();
    let mut up_count = 0;
    for replica in &options.replicas {
        let name = &replica.name;
        // A replica that never subscribed is not known to hold anything.
        let lag = lags.get(name).copied().unwrap_or(committed);
        let age = if lag == 0 {
            Duration::ZERO
        } else {
            oldest_missing_age(journal, committed - lag)
        };
        m.lag(queue, name, lag, age);
        let up = links.get(name).is_some_and(|l| {
            l.inflight
                .front()
                .is_none_or(|&(_, sent)| now.duration_since(sent) < options.ack_timeout)
        });
        up_count += usize::from(up);
        let h = health.entry(name.clone()).or_default();
        if h.up && !up {
            tracing::warn!(queue = %queue, replica = %name, lag, "replica is not acknowledging");
        }
        h.up = up;
        m.replica_state(queue, name, up, if up { None } else { h.error.as_deref() });
    }
    m.quorum(queue, options.required_acks, up_count);
}

/// How long ago the record `seq` (the oldest one a replica lacks) was written, by its write
/// time in the journal (zero if it cannot be read).
pub(super) fn oldest_missing_age(journal: &Arc<Journal>, seq: u64) -> Duration {
    let written = Reader::at(journal.clone(), seq, false)
        .and_then(|mut r| r.peek())
        .ok()
        .flatten()
        .filter(|rec| rec.seq() == seq)
        .map(|rec| rec.time());
    let Some(nanos) = written else {
        return Duration::ZERO;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Duration::from_nanos(now.saturating_sub(nanos))
}
