//! The typed queue API over the journal.
//!
//! Two handles on the same queue directory:
//!
//! * [`ReplicatedQueueImpl<T>`]: the asynchronous handle ([`Queue`], [`PersistentQueue`]);
//!   `Clone + Send + Sync`, shared by many tasks; every wait is awaited and every blocking step
//!   (segment roll, sync) runs on its own I/O thread.
//! * [`JournalQueue<T>`]: the synchronous handle for hot loops on a thread of their own (`&mut
//!   self`, no lock, no allocation, no system call per message).
//!
//! [`JournalQueue<T>`] is a handle on a queue directory: it can enqueue (any number of producers,
//! threads or processes) and consume through a named cursor. Handles with the same consumer name
//! compete for messages (a work queue: each message goes to one of them); handles with different
//! names each see every message (fan-out). A [`Tailer`] reads without a cursor.
//!
//! # Delivery guarantees
//!
//! * A message whose `enqueue` returned `Ok` is in the page cache and survives the producer
//!   being killed (with [`Durability::Sync`], a power loss too).
//! * **At-least-once** (a consumer killed at any point, including after the call returned and
//!   before it handled the message, leaves the message to the next consumer of its name):
//!   [`ReplicatedQueueImpl::recv_delivery`] + [`Delivery::ack`]; [`JournalQueue::peek`] +
//!   [`ReadGuard::commit`]; [`JournalQueue::read`] / [`JournalQueue::read_batch`] (the cursor
//!   moves after the closure returned).
//! * **Copy out, then consume** (at-least-once only for a crash *inside* the call; once it
//!   returned, the message is consumed whatever the application does with it):
//!   [`JournalQueue::dequeue`], and on the async handle [`recv`](ReplicatedQueueImpl::recv),
//!   [`dequeue`](Queue::dequeue), `try_recv`, `recv_timeout`, `stream`. Among live handles
//!   sharing a name each message is returned exactly once (a compare-and-swap of the cursor).
//! * [`JournalQueue::read`] and [`ReadGuard::commit`] move the cursor after the caller has
//!   looked at the message in place. If another handle with the same name takes the message
//!   first, the caller has seen a message it does not get; prefer `dequeue` (or deliveries
//!   within one process) for work queues whose handlers have side effects.
//!
//! [`Durability::Sync`]: crate::Durability::Sync

mod delivery;
mod handle;
mod journal_queue;
mod options;
mod raw;
mod stream;
mod tailer;
#[cfg(all(test, not(repliq_loom)))]
mod test;
mod traits;

pub use delivery::{Ack, Delivery};
pub use handle::ReplicatedQueueImpl;
pub use journal_queue::{JournalQueue, ReadGuard};
pub use options::{QueueOptions, StartAt};
pub use raw::RawQueue;
pub use stream::{MessageStream, Recv};
pub use tailer::Tailer;
pub use traits::{PersistentQueue, Queue};

/// The consumer name handles use unless told otherwise ([`QueueOptions::consumer`]).
pub const DEFAULT_CONSUMER: &str = "default";
