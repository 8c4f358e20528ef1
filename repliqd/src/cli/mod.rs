//! The `repliq` command's remote subcommands: `repliq produce --remote ADDR QUEUE` writes JSON
//! lines from standard input to a queue through any node, `repliq consume --remote ADDR QUEUE
//! --consumer NAME` prints a durable consumer's records as JSON lines and acknowledges them.
//!
//! The command has no Rust type for the messages: it asks the node for the queue's schema
//! (`Describe`, [`repliq::client::describe`]) and encodes and renders JSON with it
//! ([`repliq::descriptor::from_json`], [`repliq::descriptor::to_json`]), over the untyped
//! client ([`repliq::client::RawProducer`], [`repliq::client::RawConsumer`]).

pub mod consume;
pub mod produce;
pub mod remote;

use repliq::client::ClientError;

/// Why a remote command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The node refused, or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A line of standard input is not a message of the queue's type; the lines before it were
    /// sent, nothing from it on.
    #[error("line {line}: {reason} (the lines before it were sent, nothing from it on)")]
    BadLine {
        /// The line number, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A delivered record could not be rendered as JSON with the schema (it is not
    /// acknowledged: the node delivers it again, and after `max_deliver` deliveries moves it to
    /// the dead-letter queue).
    #[error("record {seq} cannot be rendered with the schema: {reason} (not acknowledged)")]
    Render {
        /// The record's queue sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The queue's type cannot be written from JSON (it holds a map or a set).
    #[error("queue {queue:?}: messages cannot be encoded from JSON: {reason}")]
    NotEncodable {
        /// The queue.
        queue: String,
        /// The unsupported type, where it is in the schema.
        reason: String,
    },
    /// Reading standard input or writing standard output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// A runtime for one command (a current-thread runtime: the command does one thing at a time).
///
/// # Errors
///
/// [`CliError::Io`] if the runtime cannot be built.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "starting the async runtime",
            source,
        })
}
