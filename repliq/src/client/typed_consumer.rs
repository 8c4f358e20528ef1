//! [`RemoteConsumer<T>`]: the typed pull consumer, a thin layer over [`RawConsumer`] that names
//! `T` when it opens the stream and decodes each record as a `T`.

use std::marker::PhantomData;
use std::time::Duration;

use super::ClientError;
use super::consumer::{ConsumerOptions, ConsumerSettings, Delivery, RawConsumer};
use crate::{AlignedBytes, Message};

/// Reads messages of type `T` through a durable consumer name of a queue, on its primary.
///
/// Delivery is at-least-once: a record is delivered again if it is negatively acknowledged
/// ([`nack`](RemoteConsumer::nack)), not acknowledged within the consumer's `ack_wait`, or not
/// acknowledged when the stream ends (the consumer crashed, the connection dropped: the next
/// consumer of the name gets it); after `max_deliver` deliveries it goes to the dead-letter
/// queue instead. Acknowledgements may come in any order; the durable cursor moves past a
/// record once it and every record before it are done. A newer consumer of the same name takes
/// over (the older one gets [`Refused::Superseded`](super::Refused::Superseded)).
#[derive(Debug)]
pub struct RemoteConsumer<T> {
    raw: RawConsumer,
    _type: PhantomData<fn() -> T>,
}

/// A raw delivery decoded as a `T`.
fn decode<T: Message>(d: Delivery<bytes::Bytes>) -> Result<Delivery<T>, ClientError> {
    let mut aligned = AlignedBytes::new();
    aligned.extend_from_slice(&d.message);
    Ok(Delivery {
        seq: d.seq,
        delivery_count: d.delivery_count,
        message: crate::from_bytes::<T>(&aligned)?,
    })
}

impl<T: Message> RemoteConsumer<T> {
    /// Connects to the node at `addr`, follows its redirect to the primary of `queue` and opens
    /// the durable consumer `consumer` (created at the queue's earliest record on first use).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`WrongType`](super::Refused::WrongType),
    /// [`NotFound`](super::Refused::NotFound), ...); [`ClientError::Transport`].
    pub async fn connect(addr: &str, queue: &str, consumer: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, queue, consumer, ConsumerOptions::default()).await
    }

    /// As [`connect`](RemoteConsumer::connect), with the consumer's settings.
    ///
    /// # Errors
    ///
    /// As [`connect`](RemoteConsumer::connect); [`Refused::BadRequest`](super::Refused::BadRequest)
    /// for settings out of range.
    pub async fn connect_with(
        addr: &str,
        queue: &str,
        consumer: &str,
        options: ConsumerOptions,
    ) -> Result<Self, ClientError> {
        let raw =
            RawConsumer::connect_with(addr, queue, T::NAME, T::FINGERPRINT, consumer, options)
                .await?;
        Ok(RemoteConsumer {
            raw,
            _type: PhantomData,
        })
    }

    /// See [`RawConsumer::set_trace_parent`].
    pub fn set_trace_parent(&mut self, traceparent: Option<String>) {
        self.raw.set_trace_parent(traceparent);
    }

    /// The settings the node applies to this consumer.
    pub fn settings(&self) -> &ConsumerSettings {
        self.raw.settings()
    }

    /// The durable cursor as last reported by the node (the first record not acknowledged).
    pub fn cursor(&self) -> u64 {
        self.raw.cursor()
    }

    /// The node serving the consumer (the queue's primary, after a redirect).
    pub fn node(&self) -> &str {
        self.raw.node()
    }

    /// The next delivery of a record, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// As [`RawConsumer::next_timeout`]; [`ClientError::Message`] if a record is not a valid
    /// `T`.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Delivery<T>>, ClientError> {
        self.raw
            .next_timeout(timeout)
            .await?
            .map(decode)
            .transpose()
    }

    /// See [`RawConsumer::ack`].
    ///
    /// # Errors
    ///
    /// As [`RawConsumer::ack`].
    pub async fn ack(&mut self, up_to: u64) -> Result<u64, ClientError> {
        self.raw.ack(up_to).await
    }

    /// See [`RawConsumer::ack_each`].
    ///
    /// # Errors
    ///
    /// As [`RawConsumer::ack_each`].
    pub async fn ack_each(&mut self, seqs: &[u64]) -> Result<u64, ClientError> {
        self.raw.ack_each(seqs).await
    }

    /// See [`RawConsumer::fetch`]; each record decoded as a `T`.
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](RemoteConsumer::next_timeout).
    pub async fn fetch(
        &mut self,
        max_messages: u32,
        max_bytes: u64,
        expires: Duration,
    ) -> Result<Vec<Delivery<T>>, ClientError> {
        let raw = self.raw.fetch(max_messages, max_bytes, expires).await?;
        raw.into_iter().map(decode).collect()
    }

    /// See [`RawConsumer::nack`].
    ///
    /// # Errors
    ///
    /// As [`RawConsumer::nack`].
    pub async fn nack(&mut self, seq: u64, delay: Duration) -> Result<(), ClientError> {
        self.raw.nack(seq, delay).await
    }

    /// See [`RawConsumer::in_progress`]: record `seq` gets a full `ack_wait` again.
    ///
    /// # Errors
    ///
    /// As [`RawConsumer::in_progress`].
    pub async fn in_progress(&mut self, seq: u64) -> Result<(), ClientError> {
        self.raw.in_progress(seq).await
    }
}
