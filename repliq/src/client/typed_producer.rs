//! [`RemoteProducer<T>`]: the typed producer, a thin layer over [`RawProducer`] that names `T`
//! when it opens the stream and archives each message before sending it.

use std::marker::PhantomData;

use super::ClientError;
use super::producer::{BatchAck, ProducerOptions, RawProducer};
use crate::Message;

/// Writes messages of type `T` to a queue through any node, exactly once per producer sequence.
///
/// The producer numbers its records densely from the node's `next_seq` for `(producer_id,
/// epoch)`; [`send_batch`](RemoteProducer::send_batch) retries a batch whose acknowledgement
/// was lost (reconnecting, following redirects) with the same numbers, and the node writes each
/// record at most once. Use one `RemoteProducer` per producer id at a time; a new epoch of the
/// id starts again at 0 and refuses the older epoch's streams.
#[derive(Debug)]
pub struct RemoteProducer<T> {
    raw: RawProducer,
    _type: PhantomData<fn(T)>,
}

impl<T: Message> RemoteProducer<T> {
    /// Connects to the node at `addr` (`host:port` or `http://host:port`), follows its redirect
    /// to the primary of `queue` and opens producer `producer_id` in `epoch`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`Refused::WrongType`](super::Refused::WrongType),
    /// [`Refused::NotFound`](super::Refused::NotFound),
    /// [`Refused::StaleProducerEpoch`](super::Refused::StaleProducerEpoch), ...);
    /// [`ClientError::Transport`].
    pub async fn connect(
        addr: &str,
        queue: &str,
        producer_id: &str,
        epoch: u64,
    ) -> Result<Self, ClientError> {
        Self::connect_any(&[addr], queue, producer_id, epoch).await
    }

    /// As [`connect`](RemoteProducer::connect), with several seed addresses tried in turn
    /// (also when reconnecting).
    ///
    /// # Errors
    ///
    /// As [`connect`](RemoteProducer::connect), from the last seed tried.
    pub async fn connect_any(
        seeds: &[&str],
        queue: &str,
        producer_id: &str,
        epoch: u64,
    ) -> Result<Self, ClientError> {
        Self::connect_with(seeds, queue, producer_id, epoch, ProducerOptions::default()).await
    }

    /// As [`connect_any`](RemoteProducer::connect_any), with `options` (TLS).
    ///
    /// # Errors
    ///
    /// As [`connect`](RemoteProducer::connect); [`ClientError::Tls`] if the TLS files cannot
    /// be read; [`Refused::PermissionDenied`](super::Refused::PermissionDenied) if the node does
    /// not let the client's certificate identity write the queue.
    pub async fn connect_with(
        seeds: &[&str],
        queue: &str,
        producer_id: &str,
        epoch: u64,
        options: ProducerOptions,
    ) -> Result<Self, ClientError> {
        let raw = RawProducer::connect_with(
            seeds,
            queue,
            T::NAME,
            T::FINGERPRINT,
            producer_id,
            epoch,
            options,
        )
        .await?;
        Ok(RemoteProducer {
            raw,
            _type: PhantomData,
        })
    }

    /// The producer sequence the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.raw.next_seq()
    }

    /// The node the producer writes through now (the primary).
    pub fn node(&self) -> Option<&str> {
        self.raw.node()
    }

    /// See [`RawProducer::set_trace_parent`].
    pub fn set_trace_parent(&mut self, traceparent: Option<String>) {
        self.raw.set_trace_parent(traceparent);
    }

    /// Sends one message (a batch of one).
    ///
    /// # Errors
    ///
    /// As [`send_batch`](RemoteProducer::send_batch).
    pub async fn send(&mut self, message: &T) -> Result<BatchAck, ClientError> {
        self.send_batch(std::slice::from_ref(message)).await
    }

    /// Serializes `messages`, sends them as one batch numbered from
    /// [`next_seq`](RemoteProducer::next_seq) and waits for the node's acknowledgement
    /// (after the local commit, or after the replicas' on a synchronous queue). A lost
    /// connection or a retriable refusal is retried (up to 6 tries, backing off from 100 ms)
    /// with the same numbers.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a refusal that a retry would not change
    /// ([`Refused::InvalidRecord`](super::Refused::InvalidRecord),
    /// [`Refused::Gap`](super::Refused::Gap), ...); the last error after the tries.
    pub async fn send_batch(&mut self, messages: &[T]) -> Result<BatchAck, ClientError> {
        let mut records = Vec::with_capacity(messages.len());
        for m in messages {
            records.push(bytes::Bytes::copy_from_slice(&crate::to_bytes(m)?));
        }
        self.raw.send_raw(self.raw.next_seq(), records).await
    }

    /// Sends already archived records numbered from `first_seq` (for retries and tools; the
    /// bytes must be archived `T`s), with the retries of [`send_batch`](RemoteProducer::send_batch).
    ///
    /// # Errors
    ///
    /// As [`send_batch`](RemoteProducer::send_batch).
    pub async fn send_raw(
        &mut self,
        first_seq: u64,
        records: Vec<bytes::Bytes>,
    ) -> Result<BatchAck, ClientError> {
        self.raw.send_raw(first_seq, records).await
    }
}
