//! repliq: a typed, persistent, replicated message queue.
//!
//! Put `#[repliq::message]` on a struct or enum and it becomes a [`Message`]: it is serialized
//! with [rkyv](https://docs.rs/rkyv) straight into a memory-mapped journal and read back in place,
//! as `&Archived<T>`, by consumers in other processes.
//!
//! ```
//! #[repliq::message]
//! #[derive(Debug, PartialEq)]
//! pub struct Tick {
//!     pub symbol: String,
//!     pub price: i64,
//! }
//!
//! # fn main() -> repliq::Result<()> {
//! let tick = Tick { symbol: "EURUSD".into(), price: 108_750 };
//! let bytes = repliq::to_bytes(&tick)?;
//! let archived = repliq::access::<Tick>(&bytes)?; // validated, zero-copy
//! assert_eq!(archived.symbol, "EURUSD");
//! assert_eq!(repliq::deserialize::<Tick>(archived)?, tick);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

// Lets `#[repliq::message]` (which names `::repliq`) be used inside this crate too.
extern crate self as repliq;

#[cfg(feature = "client")]
pub mod client;
pub mod dead_letter;
pub mod descriptor;
mod error;
pub mod fingerprint;
mod journal;
mod message;
mod queue;
#[allow(unsafe_code)]
mod raw;
pub mod replication;
mod sync;
mod timestamp;

pub use error::{QueueError, ReplicationError, Result};
pub use fingerprint::Fingerprint;
pub use journal::{
    ConsumerSlot, CursorInfo, Durability, JournalInfo, RawRecord, RawTailer, VerifyReport,
    consumer_slots, inspect, read_schema, remove_consumer, verify,
};
pub use message::{
    AlignedBytes, Archived, Message, PAYLOAD_ALIGN, access, deserialize, from_bytes,
    serialize_into, to_bytes,
};
pub use queue::{
    Ack, DEFAULT_CONSUMER, Delivery, JournalQueue, MessageStream, PersistentQueue, Queue,
    QueueOptions, RawQueue, ReadGuard, Recv, ReplicatedQueueImpl, StartAt, Tailer,
};
pub use raw::access_unchecked;

/// The modes queue directories and files are created with (0700 / 0600, or a set-group-ID
/// parent's group bits; docs/SECURITY.md), for programs that create the directories queues live
/// in: the daemon's persistence root and its lock file.
pub mod modes {
    pub use crate::journal::perms::{create_dir_all, file_mode};
}
#[cfg(feature = "replication")]
pub use replication::ReplicatedQueue;
pub use replication::ReplicationMode;
/// Marks a struct or enum as a repliq message. See [`Message`].
///
/// ```
/// #[repliq::message(name = "market.Side")]
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// pub enum Side {
///     Buy,
///     Sell,
/// }
/// assert_eq!(<Side as repliq::Message>::NAME, "market.Side");
/// ```
///
/// # Arguments
///
/// * `name = "..."`: the stable [`Message::NAME`] (default: the type's identifier). It is part of
///   the fingerprint, so choose it once; a dotted namespace (`"market.Tick"`) avoids collisions.
/// * `crate = path`: where to find this crate (default `::repliq`), for code that re-exports it.
///
/// # What it generates
///
/// rkyv's `Archive`, `Serialize` and `Deserialize` derives (with bytecheck validation) and serde's
/// `Serialize` and `Deserialize` derives, all routed through this crate so your crate needs no
/// other dependency; an `impl` of [`Fingerprint`] and [`Message`]. The archived type is named
/// `Archived<YourType>` (e.g. `ArchivedTick`). Container-level `#[rkyv(derive(..))]`,
/// `#[rkyv(compare(..))]` and `#[rkyv(attr(..))]` are passed through; field-level `#[rkyv]`
/// attributes are refused because they would change the layout behind the fingerprint's back.
pub use repliq_derive::message;
pub use timestamp::{ArchivedTimestamp, Timestamp};

/// Internal parsers exposed to the `cargo fuzz` targets in `fuzz/` (feature `fuzzing`). Not a
/// public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    /// The committed records in a replication frame's bytes (`journal::replica::frame_records`):
    /// their count, or the framing error.
    pub fn frame_records(bytes: &[u8]) -> std::result::Result<usize, String> {
        crate::journal::replica::frame_records(bytes).map(|r| r.len())
    }

    /// The replica's service without its transport (`replication::replica_service`).
    #[cfg(feature = "replication")]
    pub use crate::replication::replica_service_fuzz::{
        DriverRefusal, DriverStream, ReplicaDriver, check_hello,
    };

    /// What a remote producer or consumer makes of a `Refusal` the node sent.
    #[cfg(feature = "client")]
    pub fn client_refusal(node: &str, refusal: crate::client::proto::Refusal) -> String {
        crate::client::ClientError::refusal(node, refusal).to_string()
    }

    /// A frame as a primary's sender reads it from its journal.
    #[derive(Debug, Clone)]
    pub struct SourceFrame {
        /// The segment file, by its first sequence number.
        pub segment_first_seq: u64,
        /// Offset of the bytes in the segment file.
        pub offset: u64,
        /// The first record's sequence number (0 without a record).
        pub first_seq: u64,
        /// The committed records inside.
        pub record_count: u32,
        /// The journal's bytes.
        pub bytes: Vec<u8>,
    }

    /// Every frame the sender of the queue in `dir` reads, from record `next_seq` on (or, with
    /// `segment_start`, from the start of the segment that begins at `next_seq`: a resync), at
    /// most `max_records` records each.
    ///
    /// # Errors
    ///
    /// What opening or reading the journal gives.
    pub fn primary_frames(
        dir: &std::path::Path,
        next_seq: u64,
        segment_start: bool,
        max_records: u64,
    ) -> crate::Result<Vec<SourceFrame>> {
        use crate::journal::replica::ByteSource;
        let journal = crate::journal::Journal::open_read_only(dir)?;
        let mut source = if segment_start {
            ByteSource::at_segment_start(journal, next_seq)?
        } else {
            ByteSource::at(journal, next_seq)?
        };
        let mut out = Vec::new();
        while let Some(f) = source.read(1 << 20, max_records)? {
            out.push(SourceFrame {
                segment_first_seq: f.segment_first_seq,
                offset: f.offset as u64,
                first_seq: f.records.first().map_or(0, |r| r.seq),
                record_count: u32::try_from(f.records.len()).unwrap_or(u32::MAX),
                bytes: f.bytes.to_vec(),
            });
        }
        Ok(out)
    }

    /// Overwrites the payload of every committed record in a frame's `bytes` with `fill`
    /// (repeated; its length kept) and recomputes their checksums: arbitrary record contents
    /// that pass the sink's checksum check. Stops at the first entry that is not a record.
    pub fn rewrite_payloads(bytes: &mut [u8], fill: &[u8]) {
        use crate::journal::format::*;
        use crate::journal::header::{self, State};
        let mut i = 0;
        while bytes.len() - i >= RECORD_HEADER {
            let State::Committed { len } = header::decode(read_u64(bytes, i)) else {
                return;
            };
            let end = i + RECORD_HEADER + len as usize;
            if end > bytes.len() {
                return;
            }
            if !fill.is_empty() {
                for (k, b) in bytes[i + RECORD_HEADER..end].iter_mut().enumerate() {
                    *b = fill[k % fill.len()];
                }
            }
            let (seq, time) = (read_u64(bytes, i + R_SEQ), read_u64(bytes, i + R_TIME));
            let crc = record_crc(seq, len, time, &bytes[i + RECORD_HEADER..end]);
            bytes[i + R_CRC..i + R_CRC + 4].copy_from_slice(&crc.to_le_bytes());
            i += committed_extent(len as usize);
        }
    }
}

/// Re-exports for code generated by `#[repliq::message]`. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use rkyv;
    pub use serde;

    pub use std::borrow::Cow;

    pub use crate::fingerprint::Hasher;
}
