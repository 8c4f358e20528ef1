//! What the console remembers between two looks: recent counter values (for the rates) and the
//! queues' epochs (for the failovers). The daemon looks every second ([`super::sample`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many failovers the status document lists.
pub const FAILOVERS_KEPT: usize = 20;

/// Rates are taken over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A sample younger than this is too close to compute a rate from.
const RATE_MIN_SPAN: Duration = Duration::from_millis(500);

/// Samples older than this are forgotten.
const KEPT_FOR: Duration = Duration::from_secs(15);

/// A counter the console computes a rate of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// A queue's committed records.
    Enqueued(String),
    /// A cursor's consumed records: (queue, cursor).
    Dequeued(String, String),
}

impl Key {
    pub(crate) fn enqueued(queue: &str) -> Key {
        Key::Enqueued(queue.to_owned())
    }
    pub(crate) fn dequeued(queue: &str, cursor: &str) -> Key {
        Key::Dequeued(queue.to_owned(), cursor.to_owned())
    }
}

/// A queue's replication role as last seen: (epoch, primary).
type Seen = (u64, Option<String>);

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<(Instant, BTreeMap<Key, u64>)>,
    seen: BTreeMap<String, Seen>,
    failovers: VecDeque<Failover>,
}

/// Recent counters and failovers, shared by the sampler and the status requests.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the counters' values at `at`.
    pub(crate) fn record(&self, at: Instant, counters: BTreeMap<Key, u64>) {
        let mut inner = self.lock();
        while inner
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) > KEPT_FOR)
        {
            inner.samples.pop_front();
        }
        inner.samples.push_back((at, counters));
    }

    /// Per second, from the oldest sample of the last [`RATE_WINDOW`] to `current` now; `None`
    /// without such a sample, or if the counter went down (the queue was recreated).
    pub(crate) fn rate(&self, key: &Key, current: u64) -> Option<f64> {
        self.rate_at(Instant::now(), key, current)
    }

    fn rate_at(&self, now: Instant, key: &Key, current: u64) -> Option<f64> {
        let inner = self.lock();
        let (at, then) = inner.samples.iter().find_map(|(t, counters)| {
            let age = now.saturating_duration_since(*t);
            (age <= RATE_WINDOW + RATE_MIN_SPAN && age >= RATE_MIN_SPAN)
                .then(|| counters.get(key).map(|v| (*t, *v)))
                .flatten()
        })?;
        let span = now.saturating_duration_since(at).as_secs_f64();
        (current >= then).then(|| (current - then) as f64 / span)
    }

    /// Compares each queue's (epoch, epoch start, primary) with the last look: an epoch that grew
    /// is a failover. The first look at a queue records it without an event.
    pub(crate) fn observe(
        &self,
        now_unix_ms: u64,
        queues: impl IntoIterator<Item = (String, u64, u64, Option<String>)>,
    ) {
        let mut inner = self.lock();
        for (queue, epoch, epoch_start, primary) in queues {
            let before = inner.seen.insert(queue.clone(), (epoch, primary.clone()));
            let Some((from_epoch, previous_primary)) = before else {
                continue;
            };
            if epoch > from_epoch {
                inner.failovers.push_front(Failover {
                    time_unix_ms: now_unix_ms,
                    queue,
                    from_epoch,
                    epoch,
                    previous_primary,
                    primary,
                    epoch_start,
                });
                inner.failovers.truncate(FAILOVERS_KEPT);
            }
        }
    }

    /// The failovers seen, newest first.
    pub(crate) fn failovers(&self) -> Vec<Failover> {
        self.lock().failovers.iter().cloned().collect()
    }
}

/// A failover this daemon saw: the queue's epoch grew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// When it was seen (the daemon looks every second), milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The queue.
    pub queue: String,
    /// The epoch before.
    pub from_epoch: u64,
    /// The new epoch.
    pub epoch: u64,
    /// The primary before, when known.
    pub previous_primary: Option<String>,
    /// The new primary, when known.
    pub primary: Option<String>,
    /// The first sequence number of the new epoch.
    pub epoch_start: u64,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rate_over_the_window_and_none_without_an_old_enough_sample() {
        let h = History::default();
        let t0 = Instant::now();
        let key = Key::enqueued("q");
        h.record(t0, BTreeMap::from([(key.clone(), 100)]));
        // Too soon after the only sample.
        assert_eq!(h.rate_at(t0 + Duration::from_millis(100), &key, 110), None);
        let r = h.rate_at(t0 + Duration::from_secs(2), &key, 300).unwrap();
        assert!((r - 100.0).abs() < 1e-9, "{r}");
        // A counter that went down (queue recreated): no rate.
        assert_eq!(h.rate_at(t0 + Duration::from_secs(2), &key, 50), None);
        // Too old a sample is not used.
        assert_eq!(h.rate_at(t0 + Duration::from_secs(60), &key, 300), None);
        assert_eq!(
            h.rate_at(t0 + Duration::from_secs(2), &Key::dequeued("q", "c"), 1),
            None
        );
    }

    #[test]
    fn a_grown_epoch_is_a_failover_newest_first_and_bounded() {
        let h = History::default();
        h.observe(1, [("q".to_owned(), 1, 0, Some("a".to_owned()))]);
        assert!(h.failovers().is_empty());
        h.observe(2, [("q".to_owned(), 1, 0, Some("a".to_owned()))]);
        assert!(h.failovers().is_empty());
        h.observe(3, [("q".to_owned(), 2, 40, Some("b".to_owned()))]);
        let f = h.failovers();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (
                f[0].from_epoch,
                f[0].epoch,
                f[0].epoch_start,
                f[0].time_unix_ms
            ),
            (1, 2, 40, 3)
        );
        assert_eq!(f[0].previous_primary.as_deref(), Some("a"));
        assert_eq!(f[0].primary.as_deref(), Some("b"));
        for e in 3..40 {
            h.observe(e, [("q".to_owned(), e, e * 10, None)]);
        }
        let f = h.failovers();
        assert_eq!(f.len(), FAILOVERS_KEPT);
        assert_eq!(f[0].epoch, 39);
    }
}
