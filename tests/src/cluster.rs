//! The message of the container cluster test (`.ci/container-cluster.sh`) and what its
//! producers share: `acked_producer` (on a node's files) and `remote_producer` (through the
//! client port) write the same type, so one check reads both.

use std::io::Write;

/// The message: an id unique in the whole test, and a body derived from it (so a torn or
/// mixed-up record shows).
#[repliq::message(name = "cluster.Order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Unique across every producer of one test run.
    pub id: u64,
    /// `id` repeated as bytes, 0 to 40 of them.
    pub body: Vec<u8>,
}

/// Order `id` (`.ci/container_cluster_check.py` computes the same body).
#[must_use]
pub fn order(id: u64) -> Order {
    Order {
        id,
        body: (0..id % 41).map(|i| (id ^ i) as u8).collect(),
    }
}

/// Prints `text` as one line in one write, flushed: a producer killed mid-run leaves whole
/// lines.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{text}\n").as_bytes());
    let _ = out.flush();
}
