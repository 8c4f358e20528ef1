//! `repliq-check`: checks a history of client operations against the final journals of a repliq
//! cluster, in the manner of Jepsen's checkers.
//!
//! A history is JSON lines, one per client operation event (an enqueue invoked, acknowledged,
//! failed or of unknown outcome; a dequeue; an acknowledgement); the journals are what
//! `repliq cat DIR` prints on the primary and on each replica at the end of a run. The checker
//! reports, each with the operations and records that show it: acknowledged enqueues lost;
//! records no client attempted; duplicates beyond what at-least-once allows; one producer's
//! messages out of order; an older epoch's write after a newer epoch's first acknowledgement
//! (split brain); replicas that differ from the primary. Unknown outcomes count either way.
//! The format and the rules are in `docs/CHECKER.md`.
//!
//! The binary `repliq-check` runs it from files; `history_producer` writes a history while it
//! enqueues (the producer of `.ci/fault-schedules.sh`). [`sim`] runs repliq's replication state
//! machines in a seeded, simulated cluster with faults and checks their histories with the same
//! checker (`repliq-check simulate`).

pub mod check;
pub mod client;
pub mod history;
pub mod journal;
pub mod sim;

pub use check::{Anomaly, Counts, Report, check, check_with};
pub use client::Message;
pub use history::{At, Function, Kind, Op};
pub use journal::{Journal, Record};

/// Bad input: what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// A line is not the JSON expected.
    #[error("{at}: not a {what}: {message}")]
    Parse {
        /// Where.
        at: At,
        /// What was expected.
        what: &'static str,
        /// The parser's error.
        message: String,
    },
    /// A line is JSON of the right shape but makes no sense.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: At,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod test;
