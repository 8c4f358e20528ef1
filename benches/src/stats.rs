//! Latency histograms and the summaries that go into the results file.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Quantiles kept for the percentile curves in the plots.
pub const CURVE_QUANTILES: &[f64] = &[
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// A latency recorder: every sample goes into an HDR histogram (3 significant digits).
#[derive(Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder for 1 ns .. 100 s.
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one latency in nanoseconds (clamped into the histogram's range).
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    /// Percentiles of everything recorded so far.
    pub fn summary(&self) -> Latency {
        let h = &self.hist;
        Latency {
            samples: h.len(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            curve: CURVE_QUANTILES
                .iter()
                .map(|&q| (q, h.value_at_quantile(q)))
                .collect(),
        }
    }
}

/// Latency percentiles of one run, in nanoseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Number of recorded samples.
    pub samples: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// (quantile, value) pairs for the percentile curve.
    pub curve: Vec<(f64, u64)>,
}

/// Throughput of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages delivered to the consumer.
    pub messages: u64,
    /// Seconds from the first send to the last receipt.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    /// Throughput of `messages` of `size` bytes delivered in `ns` nanoseconds.
    pub fn new(messages: u64, size: usize, ns: u64) -> Self {
        let secs = (ns.max(1)) as f64 / 1e9;
        let msgs_per_sec = messages as f64 / secs;
        Self {
            messages,
            secs,
            msgs_per_sec,
            mb_per_sec: msgs_per_sec * size as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_orders_percentiles() {
        let mut r = Recorder::new();
        for v in 1..=10_000u64 {
            r.record(v);
        }
        let s = r.summary();
        assert_eq!(s.samples, 10_000);
        assert!(s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns && s.p99_ns <= s.p999_ns);
        assert!(s.p999_ns <= s.max_ns);
        assert_eq!(s.curve.len(), CURVE_QUANTILES.len());
    }

    #[test]
    fn throughput_units() {
        let t = Throughput::new(1_000_000, 64, 1_000_000_000);
        assert!((t.msgs_per_sec - 1e6).abs() < 1e-6);
        assert!((t.mb_per_sec - 64.0).abs() < 1e-6);
    }
}
