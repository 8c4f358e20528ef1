//! How far ahead of this process's producers a queue's pages are faulted in: a window that
//! follows the producers' pace, so that one background request covers a few milliseconds of
//! writing whatever the rate.
//!
//! A fixed window had to be large for a producer writing gigabytes a second (the kernel's page
//! supply is the bottleneck there) and was then far too large for a slow one: a ping-pong at
//! 200 MB/s asked for 16 MiB at a time and a 32 MiB head for every spare segment, ~175 ms of a
//! core during a 0.4 s run on a 2-core machine whose two other threads spin, and none of those
//! pages were written before the run ended. Here the window doubles while requests come faster
//! than [`REQUEST_PERIOD`] / 4 apart and halves when they come slower than [`REQUEST_PERIOD`],
//! between [`MIN_WINDOW`] and [`MAX_WINDOW`]. Requests come every half window (see
//! [`super::segment::Segment::prefault_ahead`]), so a steady producer settles where one window
//! is a quarter to one [`REQUEST_PERIOD`] of its writing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The smallest window (and the least a new segment's file is faulted in for).
pub(crate) const MIN_WINDOW: usize = 2 << 20;
/// The window a process starts with, before it has seen its producers' pace.
pub(crate) const START_WINDOW: usize = 8 << 20;
/// The largest window: a producer at the kernel's page-supply rate (~3 GB/s here) asks every
/// ~5 ms for 16 MiB.
pub(crate) const MAX_WINDOW: usize = 32 << 20;
/// About how much writing one window should cover.
pub(crate) const REQUEST_PERIOD: Duration = Duration::from_millis(20);

/// The write-ahead window of one queue in this process (shared by its producer handles).
#[derive(Debug)]
pub(crate) struct WritePace {
    window: AtomicUsize,
    last_request: Mutex<Option<Instant>>,
}

impl Default for WritePace {
    fn default() -> Self {
        WritePace {
            window: AtomicUsize::new(START_WINDOW),
            last_request: Mutex::new(None),
        }
    }
}

impl WritePace {
    /// The current window, e.g. for how much of a spare segment file to fault in.
    pub(crate) fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }

    /// Called at each pre-fault request of a producer (every half window of writing): adapts
    /// the window to the time since the previous request and returns it.
    pub(crate) fn on_request(&self) -> usize {
        self.on_request_at(Instant::now())
    }

    fn on_request_at(&self, now: Instant) -> usize {
        let mut last = self.last_request.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window.load(Ordering::Relaxed);
        let window = match last.replace(now) {
            Some(prev) => {
                let since = now.saturating_duration_since(prev);
                if since < REQUEST_PERIOD / 4 {
                    (window * 2).min(MAX_WINDOW)
                } else if since > REQUEST_PERIOD {
                    (window / 2).max(MIN_WINDOW)
                } else {
                    window
                }
            }
            None => window,
        };
        self.window.store(window, Ordering::Relaxed);
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_producer_widens_the_window_up_to_the_maximum() {
        let pace = WritePace::default();
        let t = Instant::now();
        assert_eq!(pace.on_request_at(t), START_WINDOW);
        let mut at = t;
        let mut seen = Vec::new();
        for _ in 0..6 {
            at += Duration::from_millis(1);
            seen.push(pace.on_request_at(at));
        }
        assert_eq!(
            seen,
            [
                16 << 20,
                MAX_WINDOW,
                MAX_WINDOW,
                MAX_WINDOW,
                MAX_WINDOW,
                MAX_WINDOW
            ]
        );
    }

    #[test]
    fn a_slow_producer_narrows_the_window_down_to_the_minimum() {
        let pace = WritePace::default();
        let mut at = Instant::now();
        pace.on_request_at(at);
        let mut seen = Vec::new();
        for _ in 0..4 {
            at += Duration::from_millis(100);
            seen.push(pace.on_request_at(at));
        }
        assert_eq!(seen, [4 << 20, MIN_WINDOW, MIN_WINDOW, MIN_WINDOW]);
        assert_eq!(pace.window(), MIN_WINDOW);
    }

    #[test]
    fn a_producer_in_the_target_band_keeps_its_window() {
        let pace = WritePace::default();
        let mut at = Instant::now();
        pace.on_request_at(at);
        for _ in 0..5 {
            at += Duration::from_millis(10);
            assert_eq!(pace.on_request_at(at), START_WINDOW);
        }
    }
}
