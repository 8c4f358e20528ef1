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
        let bytes = if lag == 0 {
            Some(0)
        } else {
            missing_bytes(journal, committed - lag, committed)
        };
        if let Some(bytes) = bytes {
            m.lag_bytes(queue, name, bytes);
        }
        let link = links.get(name);
        let timed_out = link.is_some_and(|l| {
            l.inflight
                .front()
                .is_some_and(|&(_, sent)| now.duration_since(sent) >= options.ack_timeout)
        });
        let up = link.is_some() && !timed_out;
        up_count += usize::from(up);
        let h = health.entry(name.clone()).or_default();
        if h.up && !up {
            tracing::warn!(queue = %queue, replica = %name, lag, "replica is not acknowledging");
        }
        if timed_out && !h.timed_out {
            m.ack_timeout(queue, name);
        }
        h.timed_out = timed_out;
        h.up = up;
        m.replica_state(queue, name, up, if up { None } else { h.error.as_deref() });
    }
    m.quorum(queue, options.required_acks, up_count);
}

/// Journal bytes from the record `first` (the oldest one a replica lacks) to the end of the last
/// committed record (`committed - 1`), by their positions: segment headers, index areas and
/// padding of the segments in between count, so it is exact within a segment and an estimate
/// within a segment's overhead across segments. `None` if a record cannot be read (retention
/// deleted it: the replica resyncs).
fn missing_bytes(journal: &Arc<Journal>, first: u64, committed: u64) -> Option<u64> {
    if first >= committed {
        return Some(0);
    }
    let at = |seq: u64| {
        Reader::at(journal.clone(), seq, false)
            .and_then(|mut r| r.peek())
            .ok()
            .flatten()
            .filter(|rec| rec.seq() == seq)
    };
    let (from, last) = (at(first)?, at(committed - 1)?);
    let end = (last.pos() + crate::journal::format::RECORD_HEADER + last.len()) as u64;
    let (a, b) = (from.segment().first_seq, last.segment().first_seq);
    if a == b {
        return Some(end.saturating_sub(from.pos() as u64));
    }
    let size = journal.config().segment_size;
    let between = journal
        .list_segments()
        .map_or(0, |l| l.iter().filter(|&&f| f > a && f < b).count() as u64);
    Some(size.saturating_sub(from.pos() as u64) + between * size + end)
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

#[cfg(test)]
mod lag_bytes_test {
    use super::*;

    #[test]
    fn missing_bytes_counts_the_journal_bytes_a_replica_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let mut q = crate::QueueOptions::new()
            .capacity(1_000_000)
            .segment_size(64 << 10)
            .create::<u64>(&path)
            .unwrap();
        for i in 0..10_000u64 {
            q.enqueue(&i).unwrap();
        }
        let journal = Journal::open(&path, false).unwrap();
        let rec = |seq: u64| {
            Reader::at(journal.clone(), seq, false)
                .unwrap()
                .peek()
                .unwrap()
                .unwrap()
        };
        let (r0, r1) = (rec(0), rec(1));
        let stride = (r1.pos() - r0.pos()) as u64;
        let last = (crate::journal::format::RECORD_HEADER + r0.len()) as u64;
        assert_eq!(missing_bytes(&journal, 10, 10), Some(0));
        assert_eq!(missing_bytes(&journal, 0, 1), Some(last));
        assert_eq!(missing_bytes(&journal, 0, 100), Some(99 * stride + last));
        // Across segments: at least the records' bytes, at most a segment's overhead more each.
        let segments = journal.list_segments().unwrap().len() as u64;
        assert!(segments > 3, "{segments} segments");
        let exact = 9_999 * stride + last;
        let all = missing_bytes(&journal, 0, 10_000).unwrap();
        assert!(
            all >= exact && all <= exact + segments * (64 << 10) / 4,
            "{all} bytes for {exact} bytes of records in {segments} segments"
        );
    }
}
