//! [`RawProducer`]: an idempotent producer over the network, of records already archived (the
//! core of the typed [`RemoteProducer<T>`](super::RemoteProducer), and what tools without the
//! Rust type use: the `repliq produce` command encodes JSON with the queue's schema).

use std::time::Duration;

use super::connect::{self, First, Open};
use super::proto::{
    ProduceBatch, ProduceOpen, ProduceReply, ProduceRequest, produce_reply, produce_request,
};
use super::{ClientError, Refused};

/// Tries of one batch (the first and the retries after a lost connection).
const TRIES: u32 = 6;
/// The first pause between tries; it doubles each time.
const BACKOFF: Duration = Duration::from_millis(100);

/// The node's acknowledgement of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchAck {
    /// The producer sequence of the batch's first record.
    pub first_seq: u64,
    /// Records in the batch.
    pub count: u32,
    /// How many of them the node already held from an earlier try (not written again).
    pub duplicates: u32,
    /// Queue sequences of the first and last record this try wrote (`None` if all were
    /// duplicates).
    pub queue_seqs: Option<(u64, u64)>,
}

/// How a producer connects (for [`RemoteProducer::connect_with`](super::RemoteProducer::connect_with)
/// and [`RawProducer::connect_with`]): TLS.
#[derive(Debug, Clone, Default)]
pub struct ProducerOptions {
    tls: Option<connect::Tls>,
}

impl ProducerOptions {
    /// Speak TLS to the nodes (feature `client-tls`): needed when the nodes run with
    /// `server.tls`, whose port asks every client for a certificate from its CA.
    #[cfg(feature = "client-tls")]
    #[must_use]
    pub fn tls(mut self, tls: super::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Writes archived records of one message type to a queue through any node, exactly once per
/// producer sequence.
///
/// The producer numbers its records densely from the node's `next_seq` for `(producer_id,
/// epoch)`; [`send_raw`](RawProducer::send_raw) retries a batch whose acknowledgement was lost
/// (reconnecting, following redirects) with the same numbers, and the node writes each record at
/// most once. Use one producer per producer id at a time; a new epoch of the id starts again at
/// 0 and refuses the older epoch's streams. The node checks each record against the queue's
/// schema and refuses a batch with an invalid one whole ([`Refused::InvalidRecord`]).
#[derive(Debug)]
pub struct RawProducer {
    seeds: Vec<String>,
    tls: Option<connect::Tls>,
    open: ProduceOpen,
    stream: Option<Stream>,
    next_seq: u64,
    traceparent: Option<String>,
}

struct Stream(Open<ProduceRequest, ProduceReply>);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("node", &self.0.node)
            .finish()
    }
}

impl RawProducer {
    /// Connects to the first of `seeds` (`host:port` or `http://host:port`) that answers,
    /// follows its redirect to the primary of `queue` and opens producer `producer_id` in
    /// `epoch`, writing records of the type named `message_type` with `fingerprint` (the
    /// queue's, as [`describe`](super::describe) tells them).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] ([`Refused::WrongType`], [`Refused::NotFound`],
    /// [`Refused::StaleProducerEpoch`], [`Refused::PermissionDenied`], ...);
    /// [`ClientError::Transport`]; [`ClientError::Tls`] if the TLS files cannot be read.
    pub async fn connect_with(
        seeds: &[&str],
        queue: &str,
        message_type: &str,
        fingerprint: u64,
        producer_id: &str,
        epoch: u64,
        options: ProducerOptions,
    ) -> Result<Self, ClientError> {
        let mut producer = RawProducer {
            seeds: seeds.iter().map(|s| (*s).to_owned()).collect(),
            tls: options.tls,
            open: ProduceOpen {
                queue: queue.to_owned(),
                message_type: message_type.to_owned(),
                fingerprint,
                producer_id: producer_id.to_owned(),
                producer_epoch: epoch,
            },
            stream: None,
            next_seq: 0,
            traceparent: None,
        };
        producer.next_seq = producer.reconnect().await?;
        Ok(producer)
    }

    /// The producer sequence the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The node the producer writes through now (the primary).
    pub fn node(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.0.node.as_str())
    }

    /// The W3C trace context (a `traceparent` header value, `00-<trace id>-<span id>-<flags>`)
    /// of the caller's current operation: the batches sent from now on carry it, and the node's
    /// span of each batch (`client.produce_batch`) becomes its child; streams opened from now
    /// on (reconnects) carry it as `traceparent` metadata. `None` stops sending one. An
    /// application using OpenTelemetry gets the value from its propagator's `inject`.
    pub fn set_trace_parent(&mut self, traceparent: Option<String>) {
        self.traceparent = traceparent;
    }

    /// Opens a stream on the first seed that answers; returns the node's next expected seq.
    async fn reconnect(&mut self) -> Result<u64, ClientError> {
        self.stream = None;
        let mut last = None;
        for seed in &self.seeds {
            match connect::open(
                seed,
                self.tls.as_ref(),
                ProduceRequest {
                    kind: Some(produce_request::Kind::Open(self.open.clone())),
                },
                self.traceparent.as_deref(),
                |mut c, s| async move { c.produce(s).await },
                |r: ProduceReply| match r.kind {
                    Some(produce_reply::Kind::Opened(o)) => First::Opened(o),
                    Some(produce_reply::Kind::Refusal(r)) => First::Refused(r),
                    _ => First::Other,
                },
            )
            .await
            {
                Ok((open, opened)) => {
                    self.stream = Some(Stream(open));
                    return Ok(opened.next_seq);
                }
                Err(e @ ClientError::Refused { .. })
                    if !e.refused().is_some_and(Refused::is_retriable) =>
                {
                    return Err(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::transport("(no seed)", "no seed address given")))
    }

    /// Sends archived records (each a message of the queue's type as
    /// [`to_bytes`](crate::to_bytes) or [`descriptor::from_json`](crate::descriptor::from_json)
    /// gives it) as one batch numbered from `first_seq` (usually
    /// [`next_seq`](RawProducer::next_seq); an earlier number retries a batch) and waits for the
    /// node's acknowledgement (after the local commit, or after the replicas' on a synchronous
    /// queue). A lost connection or a retriable refusal is retried (up to 6 tries, backing off
    /// from 100 ms) with the same numbers.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a refusal that a retry would not change
    /// ([`Refused::InvalidRecord`], [`Refused::Gap`], ...); the last error after the tries.
    pub async fn send_raw(
        &mut self,
        first_seq: u64,
        records: Vec<bytes::Bytes>,
    ) -> Result<BatchAck, ClientError> {
        let count = records.len() as u64;
        let batch = ProduceBatch {
            first_seq,
            records,
            traceparent: self.traceparent.clone().unwrap_or_default(),
        };
        let mut pause = BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = match self.stream.is_some() {
                true => self.try_batch(&batch).await,
                false => match self.reconnect().await {
                    Ok(_) => self.try_batch(&batch).await,
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(ack) => {
                    self.next_seq = self.next_seq.max(first_seq + count);
                    return Ok(ack);
                }
                Err(e) => {
                    let retriable = match e.refused() {
                        Some(r) => r.is_retriable(),
                        None => matches!(e, ClientError::Transport { .. }),
                    };
                    self.stream = None;
                    if !retriable || tries >= TRIES {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }

    async fn try_batch(&mut self, batch: &ProduceBatch) -> Result<BatchAck, ClientError> {
        let Some(Stream(open)) = self.stream.as_mut() else {
            return Err(ClientError::transport("(none)", "not connected"));
        };
        let node = open.node.clone();
        open.tx
            .send(ProduceRequest {
                kind: Some(produce_request::Kind::Batch(batch.clone())),
            })
            .await
            .map_err(|_| ClientError::transport(&node, "the stream closed"))?;
        let reply = open
            .rx
            .message()
            .await
            .map_err(|s| ClientError::transport(&node, s))?
            .ok_or_else(|| ClientError::transport(&node, "the node ended the stream"))?;
        match reply.kind {
            Some(produce_reply::Kind::Ack(a)) if a.first_seq == batch.first_seq => Ok(BatchAck {
                first_seq: a.first_seq,
                count: a.count,
                duplicates: a.duplicates,
                queue_seqs: (a.duplicates < a.count)
                    .then_some((a.first_queue_seq, a.last_queue_seq)),
            }),
            Some(produce_reply::Kind::Refusal(r)) => Err(ClientError::refusal(&node, r)),
            _ => Err(ClientError::protocol(
                &node,
                format!(
                    "expected the acknowledgement of the batch at {}",
                    batch.first_seq
                ),
            )),
        }
    }
}
