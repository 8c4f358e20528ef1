//! [`RawConsumer`]: a pull consumer with a durable name over the network, delivering the
//! records' archived bytes (the core of the typed [`RemoteConsumer<T>`](super::RemoteConsumer),
//! and what tools without the Rust type use: `repliq consume` renders records as JSON with the
//! queue's schema).

use std::collections::VecDeque;
use std::time::Duration;

use super::ClientError;
use super::connect::{self, First, Open};
use super::proto::{
    Ack, ConsumeOpen, ConsumeReply, ConsumeRequest, Fetch, InProgress, Nack, consume_reply,
    consume_request,
};

/// Credits asked for when the buffer runs dry.
const CREDITS: u32 = 256;

/// A consumer's settings (JetStream's names). Unset ones take the node's defaults: `ack_wait`
/// 30 s, `max_deliver` 10, the dead-letter queue `<queue>.dlq`, `max_ack_pending` 1000.
#[derive(Debug, Clone, Default)]
pub struct ConsumerOptions {
    ack_wait: Option<Duration>,
    max_deliver: Option<u32>,
    dead_letter_queue: Option<String>,
    max_ack_pending: Option<u32>,
    traceparent: Option<String>,
    tls: Option<connect::Tls>,
    idle_heartbeat: Option<Duration>,
}

impl ConsumerOptions {
    /// Asks the node for a heartbeat whenever it has sent nothing for `every` while this
    /// consumer waits for records (at least 100 ms), and treats twice that without a record or
    /// a heartbeat as a dead stream: the call waiting on it fails with
    /// [`ClientError::Transport`], so the application reconnects in seconds even when no packet
    /// tells it the node or the network is gone.
    #[must_use]
    pub fn idle_heartbeat(mut self, every: Duration) -> Self {
        self.idle_heartbeat = Some(every.max(Duration::from_millis(100)));
        self
    }

    /// How long a delivered record may stay unacknowledged before the node delivers it again
    /// (at least 1 ms, at most a day).
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = Some(wait.max(Duration::from_millis(1)));
        self
    }

    /// How many times a record is delivered at most before it goes to the dead-letter queue
    /// (at least 1).
    #[must_use]
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = Some(n.max(1));
        self
    }

    /// The dead-letter queue (a queue name on the same node; created on first use).
    #[must_use]
    pub fn dead_letter_queue(mut self, queue: impl Into<String>) -> Self {
        self.dead_letter_queue = Some(queue.into());
        self
    }

    /// Speak TLS to the nodes (feature `client-tls`): needed when the nodes run with
    /// `server.tls`, whose port asks every client for a certificate from its CA.
    #[cfg(feature = "client-tls")]
    #[must_use]
    pub fn tls(mut self, tls: super::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The most records delivered and not acknowledged at once (at least 1).
    #[must_use]
    pub fn max_ack_pending(mut self, n: u32) -> Self {
        self.max_ack_pending = Some(n.max(1));
        self
    }

    /// The W3C trace context (a `traceparent` header value) the stream is opened in: the
    /// node's span of the stream (`client.consume`) becomes its child, and the requests for
    /// records carry it until [`RawConsumer::set_trace_parent`] changes it.
    #[must_use]
    pub fn trace_parent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }
}

/// The settings a node applies to a consumer stream (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// See [`ConsumerOptions::ack_wait`].
    pub ack_wait: Duration,
    /// See [`ConsumerOptions::max_deliver`].
    pub max_deliver: u32,
    /// See [`ConsumerOptions::dead_letter_queue`].
    pub dead_letter_queue: String,
    /// See [`ConsumerOptions::max_ack_pending`].
    pub max_ack_pending: u32,
}

/// One delivery of a record: `T` is the message type for a
/// [`RemoteConsumer<T>`](super::RemoteConsumer), the archived bytes for a [`RawConsumer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<T> {
    /// The record's queue sequence number (what [`RawConsumer::ack`] and [`RawConsumer::nack`]
    /// name).
    pub seq: u64,
    /// 1 for the first delivery, 2 for the first redelivery, ... (counted by the node since it
    /// started serving the consumer: after a restart of its daemon, from 1 again).
    pub delivery_count: u32,
    /// The message.
    pub message: T,
}

/// Reads the records (archived bytes) of a queue through a durable consumer name, on its
/// primary. [`RemoteConsumer<T>`](super::RemoteConsumer) decodes them as `T`.
///
/// Delivery is at-least-once: a record is delivered again if it is negatively acknowledged
/// ([`nack`](RawConsumer::nack)), not acknowledged within the consumer's `ack_wait`, or not
/// acknowledged when the stream ends (the consumer crashed, the connection dropped: the next
/// consumer of the name gets it); after `max_deliver` deliveries it goes to the dead-letter
/// queue instead. Acknowledgements may come in any order; the durable cursor moves past a
/// record once it and every record before it are done. A newer consumer of the same name takes
/// over (the older one gets [`Refused::Superseded`](super::Refused::Superseded)).
#[derive(Debug)]
pub struct RawConsumer {
    stream: Stream,
    buffer: VecDeque<Delivery<bytes::Bytes>>,
    /// Credits granted and not yet used by the node.
    outstanding: u32,
    cursor: u64,
    settings: ConsumerSettings,
    traceparent: Option<String>,
    idle_heartbeat: Option<Duration>,
}

/// What one answer of the node was.
enum Event {
    /// Records (now in the buffer).
    Records,
    /// The durable cursor after an acknowledgement.
    Acked(u64),
    /// A request ended early (its expiry, or its bytes used).
    RequestDone,
    /// The node is alive and had nothing to send.
    Heartbeat,
}

struct Stream(Open<ConsumeRequest, ConsumeReply>);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("node", &self.0.node)
            .finish()
    }
}

impl RawConsumer {
    /// Connects to the node at `addr`, follows its redirect to the primary of `queue` and opens
    /// the durable consumer `consumer` (created at the queue's earliest record on first use),
    /// reading records of the type named `message_type` with `fingerprint` (the queue's, as
    /// [`describe`](super::describe) tells them).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`WrongType`](super::Refused::WrongType),
    /// [`NotFound`](super::Refused::NotFound), [`BadRequest`](super::Refused::BadRequest) for
    /// settings out of range, ...); [`ClientError::Transport`].
    pub async fn connect_with(
        addr: &str,
        queue: &str,
        message_type: &str,
        fingerprint: u64,
        consumer: &str,
        options: ConsumerOptions,
    ) -> Result<Self, ClientError> {
        let open = ConsumeOpen {
            queue: queue.to_owned(),
            message_type: message_type.to_owned(),
            fingerprint,
            consumer: consumer.to_owned(),
            ack_wait_ms: options
                .ack_wait
                .map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            max_deliver: options.max_deliver.unwrap_or(0),
            dead_letter_queue: options.dead_letter_queue.unwrap_or_default(),
            max_ack_pending: options.max_ack_pending.unwrap_or(0),
        };
        let (open, opened) = connect::open(
            addr,
            options.tls.as_ref(),
            ConsumeRequest {
                kind: Some(consume_request::Kind::Open(open)),
            },
            options.traceparent.as_deref(),
            |mut c, s| async move { c.consume(s).await },
            |r: ConsumeReply| match r.kind {
                Some(consume_reply::Kind::Opened(o)) => First::Opened(o),
                Some(consume_reply::Kind::Refusal(r)) => First::Refused(r),
                _ => First::Other,
            },
        )
        .await?;
        Ok(RawConsumer {
            stream: Stream(open),
            buffer: VecDeque::new(),
            outstanding: 0,
            cursor: opened.cursor,
            settings: ConsumerSettings {
                ack_wait: Duration::from_millis(opened.ack_wait_ms),
                max_deliver: opened.max_deliver,
                dead_letter_queue: opened.dead_letter_queue,
                max_ack_pending: opened.max_ack_pending,
            },
            traceparent: options.traceparent,
            idle_heartbeat: options.idle_heartbeat,
        })
    }

    /// The W3C trace context (a `traceparent` header value) of the caller's current
    /// operation: the requests for records sent from now on carry it, and the node's spans of
    /// the deliveries they grant (`client.fetch`) become its children. `None` stops sending one.
    pub fn set_trace_parent(&mut self, traceparent: Option<String>) {
        self.traceparent = traceparent;
    }

    /// The settings the node applies to this consumer.
    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// The durable cursor as last reported by the node (the first record not acknowledged).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The node serving the consumer (the queue's primary, after a redirect).
    pub fn node(&self) -> &str {
        &self.stream.0.node
    }

    /// The next delivery of a record, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`Superseded`](super::Refused::Superseded)),
    /// [`ClientError::Transport`] if the stream ended.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Delivery<bytes::Bytes>>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Ok(Some(delivery));
            }
            if self.outstanding == 0 {
                self.request(CREDITS, 0, None).await?;
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
    /// received; records before it waiting for a redelivery count too) and returns the durable
    /// cursor after it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] if the node refused (a sequence not delivered, superseded);
    /// [`ClientError::Transport`].
    pub async fn ack(&mut self, up_to: u64) -> Result<u64, ClientError> {
        self.acknowledge(Ack {
            up_to: Some(up_to),
            seqs: Vec::new(),
        })
        .await
    }

    /// Acknowledges each record of `seqs` (records this consumer received, in any order) and
    /// returns the durable cursor after them: it moves past a record only once every record
    /// before it is acknowledged (or dead-lettered) too.
    ///
    /// # Errors
    ///
    /// As [`ack`](RawConsumer::ack).
    pub async fn ack_each(&mut self, seqs: &[u64]) -> Result<u64, ClientError> {
        self.acknowledge(Ack {
            up_to: None,
            seqs: seqs.to_vec(),
        })
        .await
    }

    /// One pull request in JetStream's shape: up to `max_messages` deliveries and (when not 0)
    /// `max_bytes` of payload, waiting at most `expires` for them. Returns what arrived: fewer
    /// records when the request expired first, none when there were none. Records already
    /// buffered by an earlier call come first. A record larger than `max_bytes` still comes,
    /// alone.
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](RawConsumer::next_timeout).
    pub async fn fetch(
        &mut self,
        max_messages: u32,
        max_bytes: u64,
        expires: Duration,
    ) -> Result<Vec<Delivery<bytes::Bytes>>, ClientError> {
        let want = max_messages as usize;
        let mut out = Vec::new();
        self.drain_into(&mut out, want);
        if out.len() >= want {
            return Ok(out);
        }
        let ask = u32::try_from(want - out.len()).unwrap_or(u32::MAX);
        self.request(ask, max_bytes, Some(expires.max(Duration::from_millis(1))))
            .await?;
        loop {
            let event = self.receive().await?;
            self.drain_into(&mut out, want);
            if out.len() >= want || matches!(event, Event::RequestDone) {
                return Ok(out);
            }
        }
    }

    /// Moves buffered records into `out` until it holds `want`.
    fn drain_into(&mut self, out: &mut Vec<Delivery<bytes::Bytes>>, want: usize) {
        let n = want.saturating_sub(out.len()).min(self.buffer.len());
        out.extend(self.buffer.drain(..n));
    }

    /// Sends a `Fetch` for `max_messages` (and `max_bytes`, 0: no limit) lapsing after
    /// `expires`.
    async fn request(
        &mut self,
        max_messages: u32,
        max_bytes: u64,
        expires: Option<Duration>,
    ) -> Result<(), ClientError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.send(consume_request::Kind::Fetch(Fetch {
            max_messages,
            traceparent: self.traceparent.clone().unwrap_or_default(),
            max_bytes,
            expires_ms: expires.map_or(0, millis),
            idle_heartbeat_ms: self.idle_heartbeat.map_or(0, millis),
        }))
        .await?;
        self.outstanding = self.outstanding.saturating_add(max_messages);
        Ok(())
    }

    async fn acknowledge(&mut self, ack: Ack) -> Result<u64, ClientError> {
        self.send(consume_request::Kind::Ack(ack)).await?;
        // Records that arrive meanwhile are kept in the buffer.
        loop {
            if let Event::Acked(cursor) = self.receive().await? {
                return Ok(cursor);
            }
        }
    }

    /// A negative acknowledgement of record `seq` (one this consumer received): the node
    /// delivers it again after `delay` (to this consumer or the next of its name), or, once it
    /// was delivered `max_deliver` times, writes it to the dead-letter queue. The node does not
    /// answer; a refusal (a sequence not delivered) ends the stream and shows on the next call.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the stream is closed.
    pub async fn nack(&mut self, seq: u64, delay: Duration) -> Result<(), ClientError> {
        self.send(consume_request::Kind::Nack(Nack {
            seq,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        }))
        .await
    }

    /// "Still working on it" (NATS JetStream's `+WPI`): record `seq` (one this consumer
    /// received, not acknowledged yet) gets a full `ack_wait` again from the moment the node
    /// reads this, so it is not delivered a second time while a slow handler works on it. Call
    /// it more often than `ack_wait`, then [`ack_each`](RawConsumer::ack_each) or
    /// [`nack`](RawConsumer::nack) the record as usual. The node ignores it for a record
    /// already acknowledged, or already due for a redelivery (nacked, or its `ack_wait` ran out
    /// before this arrived). It does not answer; a refusal (a sequence never delivered) ends the
    /// stream and shows on the next call.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the stream is closed.
    pub async fn in_progress(&mut self, seq: u64) -> Result<(), ClientError> {
        self.send(consume_request::Kind::InProgress(InProgress {
            seqs: vec![seq],
        }))
        .await
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

    /// Reads one answer: records go to the buffer. With an idle heartbeat, twice its interval
    /// without any answer is a dead stream.
    async fn receive(&mut self) -> Result<Event, ClientError> {
        let node = self.stream.0.node.clone();
        let next = self.stream.0.rx.message();
        let reply = match self.idle_heartbeat {
            Some(every) => tokio::time::timeout(every * 2, next).await.map_err(|_| {
                ClientError::transport(
                    &node,
                    format!(
                        "no record and no heartbeat for {:?}: the stream is dead",
                        every * 2
                    ),
                )
            })?,
            None => next.await,
        };
        let reply = reply
            .map_err(|s| ClientError::transport(&node, s))?
            .ok_or_else(|| ClientError::transport(&node, "the node ended the stream"))?;
        match reply.kind {
            Some(consume_reply::Kind::Records(r)) => {
                let n = u32::try_from(r.records.len()).unwrap_or(u32::MAX);
                self.outstanding = self.outstanding.saturating_sub(n);
                self.buffer.extend(r.records.into_iter().map(|r| Delivery {
                    seq: r.seq,
                    delivery_count: r.delivery_count,
                    message: r.payload,
                }));
                Ok(Event::Records)
            }
            Some(consume_reply::Kind::Acked(a)) => {
                self.cursor = a.cursor;
                Ok(Event::Acked(a.cursor))
            }
            Some(consume_reply::Kind::Heartbeat(h)) => {
                self.cursor = h.cursor;
                self.outstanding = u32::try_from(h.credits).unwrap_or(u32::MAX);
                Ok(Event::Heartbeat)
            }
            Some(consume_reply::Kind::FetchDone(e)) => {
                self.outstanding = u32::try_from(e.credits).unwrap_or(u32::MAX);
                Ok(Event::RequestDone)
            }
            Some(consume_reply::Kind::Refusal(r)) => Err(ClientError::refusal(&node, r)),
            _ => Err(ClientError::protocol(&node, "unexpected answer")),
        }
    }
}
