//! What the history clients of the fault schedules (`history_producer`, `history_consumer`)
//! share: the message they write and read, the clock, the epoch they saw, and how a history
//! line is written.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Op;

/// The message: its producer and the producer's sequence (what the checker matches records
/// by), and a body derived from both so that a torn or mixed-up record shows.
#[repliq::message(name = "check.Message")]
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The producer's id, unique in one run.
    pub producer: u64,
    /// The producer's sequence number, from 0.
    pub seq: u64,
    /// 0 to 40 bytes derived from `producer` and `seq`.
    pub body: Vec<u8>,
}

impl Message {
    /// Message `seq` of `producer`, with its derived body.
    pub fn new(producer: u64, seq: u64) -> Self {
        let x = producer.wrapping_mul(31) ^ seq;
        Message {
            producer,
            seq,
            body: (0..x % 41).map(|i| (x ^ i) as u8).collect(),
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch (the history's `time`).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The epoch in the queue's `replication.json` at `dir`, if it can be read.
pub fn epoch(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("replication.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("epoch")?.as_u64()
}

/// Writes `op` as one history line on stdout, flushed.
pub fn emit(op: &Op) {
    let Ok(json) = serde_json::to_string(op) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    // One write per line: a client killed mid-run leaves whole lines.
    let _ = out.write_all(format!("{json}\n").as_bytes());
    let _ = out.flush();
}
