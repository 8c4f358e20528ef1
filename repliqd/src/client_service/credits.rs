//! A pull consumer's credits: the `Fetch` requests it made, each with its own count of records,
//! its own bytes and its own expiry, served in the order they came (NATS JetStream's pull
//! requests), and when the stream owes the client an idle heartbeat. I/O-free: the stream
//! (`consume.rs`) asks what it may send, charges what it sent, and sends what comes due.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use repliq::client::proto::Fetch;

/// The most records a client may be owed at once (over all its requests).
pub const MAX_CREDITS: u64 = 1 << 20;
/// The shortest idle heartbeat interval a client may ask for.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// One `Fetch`: what it may still be sent, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    messages: u64,
    /// `None`: no byte limit.
    bytes: Option<u64>,
    expires: Option<Instant>,
}

/// What the next batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Records.
    pub messages: u64,
    /// Payload bytes, when every open request limits them (a record that does not fit is sent
    /// only as the first of a batch, so a record larger than any request is never stuck).
    pub bytes: Option<u64>,
}

/// The open requests of one consumer stream.
#[derive(Debug)]
pub struct Credits {
    requests: VecDeque<Request>,
    /// The trace context of the newest `Fetch` that carried one.
    pub traceparent: String,
    /// The idle heartbeat interval of the newest request that asked for one.
    heartbeat: Option<Duration>,
    /// When the stream last sent the client anything.
    last_sent: Instant,
}

impl Credits {
    /// No credits yet; nothing sent since `now`.
    pub fn new(now: Instant) -> Credits {
        Credits {
            requests: VecDeque::new(),
            traceparent: String::new(),
            heartbeat: None,
            last_sent: now,
        }
    }

    /// A `Fetch` arrived at `now`.
    pub fn grant(&mut self, fetch: &Fetch, now: Instant) {
        if !fetch.traceparent.is_empty() {
            self.traceparent.clone_from(&fetch.traceparent);
        }
        if fetch.idle_heartbeat_ms > 0 {
            self.heartbeat =
                Some(Duration::from_millis(fetch.idle_heartbeat_ms).max(MIN_HEARTBEAT));
        }
        let room = MAX_CREDITS.saturating_sub(self.left());
        let messages = match (fetch.max_messages, fetch.max_bytes) {
            (0, 0) => return,
            // Bytes only: as many records as the bytes allow.
            (0, _) => room,
            (n, _) => u64::from(n).min(room),
        };
        if messages == 0 {
            return;
        }
        self.requests.push_back(Request {
            messages,
            bytes: (fetch.max_bytes > 0).then_some(fetch.max_bytes),
            expires: (fetch.expires_ms > 0).then(|| now + Duration::from_millis(fetch.expires_ms)),
        });
    }

    /// Records the client may still be sent.
    pub fn left(&self) -> u64 {
        self.requests.iter().map(|r| r.messages).sum()
    }

    /// What the next batch may hold.
    pub fn budget(&self) -> Budget {
        let bytes = self
            .requests
            .iter()
            .map(|r| r.bytes)
            .try_fold(0u64, |sum, b| b.map(|b| sum.saturating_add(b)));
        Budget {
            messages: self.left(),
            bytes: if self.requests.is_empty() {
                Some(0)
            } else {
                bytes
            },
        }
    }

    /// Charges records of these payload sizes, sent at `now`, to the requests in order; a
    /// request whose records or bytes are used up is done. Returns the unused records of each
    /// request that ended by its bytes with records left (the client is told: it cannot count
    /// bytes it has not seen).
    pub fn charge(&mut self, sizes: impl IntoIterator<Item = u64>, now: Instant) -> Vec<u64> {
        let mut ended = Vec::new();
        for size in sizes {
            let Some(front) = self.requests.front_mut() else {
                break;
            };
            front.messages = front.messages.saturating_sub(1);
            if let Some(b) = front.bytes.as_mut() {
                *b = b.saturating_sub(size);
            }
            if front.messages == 0 {
                self.requests.pop_front();
            } else if front.bytes == Some(0) {
                ended.push(front.messages);
                self.requests.pop_front();
            }
        }
        self.sent(now);
        ended
    }

    /// The stream sent the client something at `now` (records, an acknowledgement's answer, a
    /// heartbeat): the idle interval starts again.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// Removes the requests whose expiry passed by `now`; the unused records of each.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut lapsed = Vec::new();
        self.requests.retain(|r| {
            let keep = r.expires.is_none_or(|at| at > now);
            if !keep {
                lapsed.push(r.messages);
            }
            keep
        });
        lapsed
    }

    /// Whether a heartbeat is due: the client asked for them, holds unused credits, and heard
    /// nothing for the interval.
    pub fn heartbeat_due(&self, now: Instant) -> bool {
        self.heartbeat
            .is_some_and(|every| self.left() > 0 && now.duration_since(self.last_sent) >= every)
    }

    /// The next moment something comes due by itself (a request's expiry, a heartbeat).
    pub fn next_event(&self) -> Option<Instant> {
        let expiry = self.requests.iter().filter_map(|r| r.expires).min();
        let heartbeat = self
            .heartbeat
            .filter(|_| self.left() > 0)
            .map(|every| self.last_sent + every);
        expiry.into_iter().chain(heartbeat).min()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn fetch(messages: u32, bytes: u64, expires_ms: u64, heartbeat_ms: u64) -> Fetch {
        Fetch {
            max_messages: messages,
            traceparent: String::new(),
            max_bytes: bytes,
            expires_ms,
            idle_heartbeat_ms: heartbeat_ms,
        }
    }

    #[test]
    fn requests_are_served_in_order_and_end_when_used_up() {
        let t0 = Instant::now();
        let mut c = Credits::new(t0);
        assert_eq!(
            c.budget(),
            Budget {
                messages: 0,
                bytes: Some(0)
            }
        );
        c.grant(&fetch(3, 0, 0, 0), t0);
        c.grant(&fetch(2, 0, 0, 0), t0);
        assert_eq!(
            c.budget(),
            Budget {
                messages: 5,
                bytes: None
            }
        );
        c.charge([10, 10, 10, 10], t0);
        assert_eq!(c.left(), 1);
        c.charge([10], t0);
        assert_eq!(
            c.budget(),
            Budget {
                messages: 0,
                bytes: Some(0)
            }
        );
    }

    #[test]
    fn bytes_limit_a_request_and_a_record_larger_than_them_ends_it() {
        let t0 = Instant::now();
        let mut c = Credits::new(t0);
        c.grant(&fetch(100, 1000, 0, 0), t0);
        c.grant(&fetch(0, 500, 0, 0), t0);
        let b = c.budget();
        assert_eq!(b.bytes, Some(1500));
        // 900 bytes, then a record of 300 that the first request cannot hold whole: it is charged
        // there (sent as that batch's first record) and ends the request.
        assert_eq!(c.charge([900, 300], t0), vec![98], "ended by its bytes");
        assert_eq!(
            c.budget().bytes,
            Some(500),
            "only the bytes-only request is left"
        );
        assert!(c.charge([499], t0).is_empty());
        assert_eq!(c.budget().bytes, Some(1));
        assert_eq!(c.charge([1], t0).len(), 1);
        assert_eq!(c.left(), 0);
        // One request without a byte limit lifts the limit for the batch.
        c.grant(&fetch(1, 10, 0, 0), t0);
        c.grant(&fetch(1, 0, 0, 0), t0);
        assert_eq!(c.budget().bytes, None);
    }

    #[test]
    fn a_request_lapses_at_its_expiry_with_its_unused_records() {
        let t0 = Instant::now();
        let mut c = Credits::new(t0);
        c.grant(&fetch(10, 0, 1000, 0), t0);
        c.grant(&fetch(5, 0, 0, 0), t0);
        c.charge([1, 1, 1], t0);
        assert_eq!(c.next_event(), Some(t0 + Duration::from_millis(1000)));
        assert!(c.expire(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(c.expire(t0 + Duration::from_millis(1000)), vec![7]);
        assert_eq!(c.left(), 5, "the request without an expiry stays");
        assert_eq!(c.next_event(), None);
    }

    #[test]
    fn heartbeats_are_due_only_with_credits_after_an_idle_interval() {
        let t0 = Instant::now();
        let mut c = Credits::new(t0);
        c.grant(&fetch(0, 0, 0, 50), t0);
        assert!(
            !c.heartbeat_due(t0 + Duration::from_secs(1)),
            "no credits: none due"
        );
        c.grant(&fetch(4, 0, 0, 0), t0);
        // The interval is at least MIN_HEARTBEAT.
        assert!(!c.heartbeat_due(t0 + Duration::from_millis(99)));
        assert!(c.heartbeat_due(t0 + MIN_HEARTBEAT));
        assert_eq!(c.next_event(), Some(t0 + MIN_HEARTBEAT));
        c.sent(t0 + MIN_HEARTBEAT);
        assert!(!c.heartbeat_due(t0 + MIN_HEARTBEAT + Duration::from_millis(50)));
        c.charge([1, 1, 1, 1], t0 + MIN_HEARTBEAT * 2);
        assert!(
            !c.heartbeat_due(t0 + MIN_HEARTBEAT * 10),
            "used up: none due"
        );
    }

    #[test]
    fn credits_are_capped() {
        let t0 = Instant::now();
        let mut c = Credits::new(t0);
        for _ in 0..5 {
            c.grant(&fetch(u32::MAX, 0, 0, 0), t0);
        }
        assert_eq!(c.left(), MAX_CREDITS);
    }
}
