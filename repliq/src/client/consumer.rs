//! [`RemoteConsumer<T>`]: a pull consumer with a durable name over the network.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use super::ClientError;
use super::connect::{self, First, Open};
use super::proto::{
    Ack, ConsumeOpen, ConsumeReply, ConsumeRequest, Fetch, consume_reply, consume_request,
};
use crate::{AlignedBytes, Message};

/// Credits asked for when the buffer runs dry.
const CREDITS: u32 = 256;

/// Reads messages of type `T` through a durable consumer name of a queue, on its primary.
///
/// Delivery is at-least-once: [`ack`](RemoteConsumer::ack) moves the durable cursor; records
/// delivered but not acknowledged when the stream ends (the consumer crashed, the connection
/// dropped) are delivered again to the next consumer of the name. A newer consumer of the same
/// name takes over (the older one gets [`Refused::Superseded`](super::Refused::Superseded)).
#[derive(Debug)]
pub struct RemoteConsumer<T> {
    stream: Stream,
    buffer: VecDeque<(u64, bytes::Bytes)>,
    /// Credits granted and not yet used by the node.
    outstanding: u32,
    cursor: u64,
    _type: PhantomData<fn() -> T>,
}

struct Stream(Open<ConsumeRequest, ConsumeReply>);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("node", &self.0.node)
            .finish()
    }
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
        let open = ConsumeOpen {
            queue: queue.to_owned(),
            message_type: T::NAME.to_owned(),
            fingerprint: T::FINGERPRINT,
            consumer: consumer.to_owned(),
        };
        let (open, opened) = connect::open(
            addr,
            ConsumeRequest {
                kind: Some(consume_request::Kind::Open(open)),
            },
            |mut c, s| async move { c.consume(s).await },
            |r: ConsumeReply| match r.kind {
                Some(consume_reply::Kind::Opened(o)) => First::Opened(o),
                Some(consume_reply::Kind::Refusal(r)) => First::Refused(r),
                _ => First::Other,
            },
        )
        .await?;
        Ok(RemoteConsumer {
            stream: Stream(open),
            buffer: VecDeque::new(),
            outstanding: 0,
            cursor: opened.cursor,
            _type: PhantomData,
        })
    }

    /// The durable cursor as last reported by the node (the first record not acknowledged).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next record, `(queue sequence, message)`, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`Superseded`](super::Refused::Superseded)),
    /// [`ClientError::Transport`] if the stream ended; [`ClientError::Message`] if a record is
    /// not a valid `T`.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, T)>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((seq, payload)) = self.buffer.pop_front() {
                let mut aligned = AlignedBytes::new();
                aligned.extend_from_slice(&payload);
                return Ok(Some((seq, crate::from_bytes::<T>(&aligned)?)));
            }
            if self.outstanding == 0 {
                self.send(consume_request::Kind::Fetch(Fetch {
                    max_messages: CREDITS,
                }))
                .await?;
                self.outstanding = CREDITS;
            }
            match tokio::time::timeout_at(deadline, self.receive()).await {
                Ok(r) => {
                    r?;
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Acknowledges every record up to and including queue sequence `up_to` (one this consumer
    /// received) and returns the durable cursor after it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] if the node refused (a sequence not delivered, superseded);
    /// [`ClientError::Transport`].
    pub async fn ack(&mut self, up_to: u64) -> Result<u64, ClientError> {
        self.send(consume_request::Kind::Ack(Ack { up_to })).await?;
        // Records that arrive meanwhile are kept in the buffer.
        loop {
            if let Some(cursor) = self.receive().await? {
                return Ok(cursor);
            }
        }
    }

    async fn send(&mut self, kind: consume_request::Kind) -> Result<(), ClientError> {
        let node = &self.stream.0.node;
        self.stream
            .0
            .tx
            .send(ConsumeRequest { kind: Some(kind) })
            .await
            .map_err(|_| ClientError::transport(node, "the stream closed"))
    }

    /// Reads one answer: records go to the buffer (`None`), an acknowledgement returns the
    /// cursor.
    async fn receive(&mut self) -> Result<Option<u64>, ClientError> {
        let node = self.stream.0.node.clone();
        let reply = self
            .stream
            .0
            .rx
            .message()
            .await
            .map_err(|s| ClientError::transport(&node, s))?
            .ok_or_else(|| ClientError::transport(&node, "the node ended the stream"))?;
        match reply.kind {
            Some(consume_reply::Kind::Records(r)) => {
                let n = u32::try_from(r.records.len()).unwrap_or(u32::MAX);
                self.outstanding = self.outstanding.saturating_sub(n);
                self.buffer
                    .extend(r.records.into_iter().map(|r| (r.seq, r.payload)));
                Ok(None)
            }
            Some(consume_reply::Kind::Acked(a)) => {
                self.cursor = a.cursor;
                Ok(Some(a.cursor))
            }
            Some(consume_reply::Kind::Refusal(r)) => Err(ClientError::refusal(&node, r)),
            _ => Err(ClientError::protocol(&node, "unexpected answer")),
        }
    }
}
