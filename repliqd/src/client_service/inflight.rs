//! The deliveries of one durable consumer that are not done yet: which records wait for an
//! acknowledgement (until when), which wait to be delivered again, how often each was
//! delivered, and where the durable cursor may move. No I/O: the stream (`consume`) reads the
//! records, writes the dead letters and commits the cursor this state computes.
//!
//! Every record before `next_read` was delivered at least once. Such a record is *done* unless
//! it is in `flights`; records at or after `next_read` were never delivered, except those in
//! `done_ahead` (dead-lettered before a restart of the daemon, found in the dead-letter queue),
//! which are skipped when reached. So the cursor, the first record not done, is the first
//! flight or else `next_read`: it never passes a record that is not acknowledged or
//! dead-lettered, whatever order the acknowledgements come in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Why a record is to be delivered again (the last reason, for the dead letter's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The consumer sent a negative acknowledgement.
    Nack,
    /// No acknowledgement within `ack_wait`.
    AckWait,
    /// The stream it was delivered on ended first.
    StreamEnded,
}

impl Cause {
    /// The cause in words.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::Nack => "negatively acknowledged",
            Cause::AckWait => "not acknowledged within ack_wait",
            Cause::StreamEnded => "its stream ended before an acknowledgement",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Delivered; delivered again if not acknowledged by `deadline`.
    Waiting { deadline: Instant },
    /// To be delivered again from `at` on.
    Ready { at: Instant, cause: Cause },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flight {
    deliveries: u32,
    state: State,
}

/// A record to handle now: deliver it again, or (delivered `max_deliver` times) dead-letter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub seq: u64,
    /// Deliveries so far.
    pub deliveries: u32,
    pub cause: Cause,
}

/// An acknowledgement or negative acknowledgement of a record never delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDelivered {
    pub seq: u64,
    /// The first record not delivered yet.
    pub next_read: u64,
}

/// The in-flight deliveries of one consumer (see the module docs).
#[derive(Debug, Clone)]
pub struct Inflight {
    next_read: u64,
    flights: BTreeMap<u64, Flight>,
    done_ahead: BTreeSet<u64>,
}

impl Inflight {
    /// The state of a consumer whose durable cursor is `cursor`, nothing in flight; records in
    /// `dead_lettered` (at or after the cursor) are done and will not be delivered.
    pub fn new(cursor: u64, dead_lettered: impl IntoIterator<Item = u64>) -> Inflight {
        Inflight {
            next_read: cursor,
            flights: BTreeMap::new(),
            done_ahead: dead_lettered.into_iter().filter(|s| *s >= cursor).collect(),
        }
    }

    /// The first record that is not done: where the durable cursor may move.
    pub fn cursor(&self) -> u64 {
        self.flights
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_read)
    }

    /// Records delivered and not done.
    pub fn pending(&self) -> usize {
        self.flights.len()
    }

    /// Record `seq`, the next one read from the queue, is done already (dead-lettered before a
    /// restart): it is passed over, not delivered.
    pub fn skip_if_done(&mut self, seq: u64) -> bool {
        if self.done_ahead.remove(&seq) {
            self.next_read = self.next_read.max(seq + 1);
            true
        } else {
            false
        }
    }

    /// Record `seq` was read from the queue and delivered for the first time.
    pub fn delivered_first(&mut self, seq: u64, now: Instant, ack_wait: Duration) {
        self.next_read = self.next_read.max(seq + 1);
        self.flights.insert(
            seq,
            Flight {
                deliveries: 1,
                state: State::Waiting {
                    deadline: now + ack_wait,
                },
            },
        );
    }

    /// Record `seq` (a flight) was delivered again; returns its delivery count.
    pub fn delivered_again(&mut self, seq: u64, now: Instant, ack_wait: Duration) -> u32 {
        match self.flights.get_mut(&seq) {
            Some(f) => {
                f.deliveries = f.deliveries.saturating_add(1);
                f.state = State::Waiting {
                    deadline: now + ack_wait,
                };
                f.deliveries
            }
            None => 0,
        }
    }

    /// Record `seq` is done (acknowledged, dead-lettered, or gone from the queue).
    pub fn done(&mut self, seq: u64) {
        self.flights.remove(&seq);
    }

    /// Acknowledges record `seq`; one done already is ignored.
    ///
    /// # Errors
    ///
    /// [`NotDelivered`] if `seq` was never delivered.
    pub fn ack(&mut self, seq: u64) -> Result<(), NotDelivered> {
        self.check_delivered(seq)?;
        self.flights.remove(&seq);
        Ok(())
    }

    /// Acknowledges every record up to and including `up_to`.
    ///
    /// # Errors
    ///
    /// [`NotDelivered`] if `up_to` was never delivered.
    pub fn ack_up_to(&mut self, up_to: u64) -> Result<(), NotDelivered> {
        self.check_delivered(up_to)?;
        self.flights = self.flights.split_off(&(up_to + 1));
        Ok(())
    }

    /// A negative acknowledgement: record `seq` is delivered again from `now + delay` on; one
    /// done already is ignored.
    ///
    /// # Errors
    ///
    /// [`NotDelivered`] if `seq` was never delivered.
    pub fn nack(&mut self, seq: u64, now: Instant, delay: Duration) -> Result<(), NotDelivered> {
        self.check_delivered(seq)?;
        if let Some(f) = self.flights.get_mut(&seq) {
            f.state = State::Ready {
                at: now + delay,
                cause: Cause::Nack,
            };
        }
        Ok(())
    }

    /// "In progress": record `seq`, waiting for its acknowledgement, gets a full `ack_wait` from
    /// `now` on. Returns whether it did: a record done already, or already due for a
    /// redelivery (nacked, or its `ack_wait` ran out), is left as it is.
    ///
    /// # Errors
    ///
    /// [`NotDelivered`] if `seq` was never delivered.
    pub fn in_progress(
        &mut self,
        seq: u64,
        now: Instant,
        ack_wait: Duration,
    ) -> Result<bool, NotDelivered> {
        self.check_delivered(seq)?;
        match self.flights.get_mut(&seq) {
            Some(f) if matches!(f.state, State::Waiting { .. }) => {
                f.state = State::Waiting {
                    deadline: now + ack_wait,
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The stream ended: every record waiting for its acknowledgement is to be delivered again
    /// at once (to the next stream of the consumer); nack delays stay.
    pub fn release(&mut self, now: Instant) {
        for f in self.flights.values_mut() {
            if let State::Waiting { .. } = f.state {
                f.state = State::Ready {
                    at: now,
                    cause: Cause::StreamEnded,
                };
            }
        }
    }

    /// Records waiting past their `ack_wait` become due for a redelivery.
    pub fn expire(&mut self, now: Instant) {
        for f in self.flights.values_mut() {
            if let State::Waiting { deadline } = f.state
                && deadline <= now
            {
                f.state = State::Ready {
                    at: now,
                    cause: Cause::AckWait,
                };
            }
        }
    }

    /// Records to deliver no more: to be delivered again (whenever) and delivered
    /// `max_deliver` times already.
    pub fn exhausted(&self, max_deliver: u32) -> Vec<Due> {
        self.flights
            .iter()
            .filter_map(|(&seq, f)| match f.state {
                State::Ready { cause, .. } if f.deliveries >= max_deliver => Some(Due {
                    seq,
                    deliveries: f.deliveries,
                    cause,
                }),
                _ => None,
            })
            .collect()
    }

    /// Up to `max` records due for a redelivery now (and delivered fewer than `max_deliver`
    /// times), lowest sequence first.
    pub fn ready(&self, now: Instant, max_deliver: u32, max: usize) -> Vec<Due> {
        self.flights
            .iter()
            .filter_map(|(&seq, f)| match f.state {
                State::Ready { at, cause } if at <= now && f.deliveries < max_deliver => {
                    Some(Due {
                        seq,
                        deliveries: f.deliveries,
                        cause,
                    })
                }
                _ => None,
            })
            .take(max)
            .collect()
    }

    /// The next moment something changes by itself (an `ack_wait` runs out, a nack's delay
    /// ends).
    pub fn next_due(&self) -> Option<Instant> {
        self.flights
            .values()
            .map(|f| match f.state {
                State::Waiting { deadline } => deadline,
                State::Ready { at, .. } => at,
            })
            .min()
    }

    fn check_delivered(&self, seq: u64) -> Result<(), NotDelivered> {
        if seq >= self.next_read {
            return Err(NotDelivered {
                seq,
                next_read: self.next_read,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(30);

    fn delivered(n: u64, now: Instant) -> Inflight {
        let mut s = Inflight::new(0, []);
        for seq in 0..n {
            s.delivered_first(seq, now, WAIT);
        }
        s
    }

    #[test]
    fn the_cursor_passes_only_a_contiguous_prefix_of_done_records() {
        let now = Instant::now();
        let mut s = delivered(5, now);
        assert_eq!(s.cursor(), 0);
        s.ack(1).unwrap();
        s.ack(3).unwrap();
        assert_eq!(s.cursor(), 0, "record 0 is not acknowledged");
        s.ack(0).unwrap();
        assert_eq!(s.cursor(), 2);
        s.done(2); // dead-lettered
        assert_eq!(s.cursor(), 4);
        s.ack(4).unwrap();
        assert_eq!(s.cursor(), 5);
        // Acknowledged twice, or a record long done: ignored.
        s.ack(3).unwrap();
        assert_eq!(
            s.ack(5),
            Err(NotDelivered {
                seq: 5,
                next_read: 5
            })
        );
    }

    #[test]
    fn a_cumulative_ack_covers_records_waiting_for_a_redelivery() {
        let now = Instant::now();
        let mut s = delivered(4, now);
        s.nack(1, now, Duration::from_secs(5)).unwrap();
        s.ack_up_to(2).unwrap();
        assert_eq!(s.cursor(), 3);
        assert!(s.ready(now + WAIT, 10, 10).is_empty());
        assert!(s.ack_up_to(4).is_err());
    }

    #[test]
    fn nacks_expiries_and_stream_ends_make_records_due_until_max_deliver() {
        let now = Instant::now();
        let mut s = delivered(3, now);
        s.nack(0, now, Duration::from_secs(2)).unwrap();
        assert!(s.ready(now, 3, 10).is_empty(), "the nack's delay");
        assert_eq!(s.next_due(), Some(now + Duration::from_secs(2)));
        let later = now + Duration::from_secs(2);
        let due = s.ready(later, 3, 10);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].seq, due[0].cause), (0, Cause::Nack));
        assert_eq!(s.delivered_again(0, later, WAIT), 2);
        // Record 1 runs out of ack_wait.
        s.expire(now + WAIT);
        let due = s.ready(now + WAIT, 3, 10);
        assert_eq!(
            due.iter().map(|d| (d.seq, d.cause)).collect::<Vec<_>>(),
            vec![(1, Cause::AckWait), (2, Cause::AckWait)]
        );
        // The stream ends: record 0 (waiting again) is due at once.
        s.release(later);
        assert_eq!(s.ready(later, 3, 1)[0].seq, 0);
        assert_eq!(s.delivered_again(0, later, WAIT), 3);
        s.nack(0, later, Duration::ZERO).unwrap();
        assert!(
            s.ready(later, 3, 10).iter().all(|d| d.seq != 0),
            "delivered max_deliver times"
        );
        assert_eq!(
            s.exhausted(3),
            vec![Due {
                seq: 0,
                deliveries: 3,
                cause: Cause::Nack
            }]
        );
    }

    #[test]
    fn in_progress_restarts_ack_wait_only_for_a_record_waiting_for_its_ack() {
        let now = Instant::now();
        let mut s = delivered(4, now);
        let later = now + WAIT - Duration::from_secs(1);
        assert_eq!(s.in_progress(0, later, WAIT), Ok(true));
        s.expire(now + WAIT);
        let due: Vec<u64> = s.ready(now + WAIT, 10, 10).iter().map(|d| d.seq).collect();
        assert_eq!(due, vec![1, 2, 3], "record 0 has a fresh ack_wait");
        assert_eq!(s.next_due(), Some(now + WAIT), "the others are due");
        s.expire(later + WAIT);
        assert_eq!(s.ready(later + WAIT, 10, 1)[0].seq, 0, "then record 0 too");
        // Done, nacked or expired already: ignored, and stays as it was.
        let mut s = delivered(3, now);
        s.ack(0).unwrap();
        s.nack(1, now, Duration::from_secs(5)).unwrap();
        s.expire(now + WAIT);
        for seq in 0..3 {
            assert_eq!(
                s.in_progress(seq, now + WAIT, WAIT),
                Ok(false),
                "record {seq}"
            );
        }
        assert_eq!(s.pending(), 2);
        assert_eq!(s.ready(now + WAIT, 10, 10).len(), 2);
        assert_eq!(
            s.in_progress(3, now, WAIT),
            Err(NotDelivered {
                seq: 3,
                next_read: 3
            })
        );
    }

    #[test]
    fn records_dead_lettered_before_a_restart_are_skipped() {
        let now = Instant::now();
        let mut s = Inflight::new(10, [4, 12, 13]);
        assert!(!s.skip_if_done(10));
        s.delivered_first(10, now, WAIT);
        assert!(!s.skip_if_done(11));
        s.delivered_first(11, now, WAIT);
        assert!(s.skip_if_done(12));
        assert!(s.skip_if_done(13));
        assert_eq!(s.next_read, 14);
        s.ack_up_to(11).unwrap();
        assert_eq!(s.cursor(), 14);
        assert!(!s.skip_if_done(4), "before the cursor: not kept");
    }
}
