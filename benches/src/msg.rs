//! The message type every repliq workload sends.

/// A benchmark message: timestamp, sequence number and filler. Its archived form is exactly
/// `24 + payload.len()` bytes, so a message "of size N" carries `N - 24` filler bytes.
#[repliq::message(name = "bench.Msg")]
#[derive(Debug, Clone, PartialEq)]
pub struct BenchMsg {
    /// Intended send time, `CLOCK_MONOTONIC` ns.
    pub ts: u64,
    /// Sequence number; `u64::MAX` ends a run.
    pub seq: u64,
    /// Filler bytes.
    pub payload: Vec<u8>,
}

/// Fixed part of [`BenchMsg`]'s archived size.
pub const OVERHEAD: usize = 24;

impl BenchMsg {
    /// A message whose archived form is `size` bytes (at least [`OVERHEAD`]).
    pub fn of_size(size: usize) -> Self {
        Self {
            ts: 0,
            seq: 0,
            payload: vec![0xA5; size.saturating_sub(OVERHEAD)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_size_is_the_nominal_size() {
        for size in [64, 1024, 16384] {
            let bytes = repliq::to_bytes(&BenchMsg::of_size(size)).unwrap();
            assert_eq!(bytes.len(), size);
        }
    }
}
