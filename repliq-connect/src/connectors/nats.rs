//! NATS JetStream: [`NatsSink`] (publish with acknowledgement, `Nats-Msg-Id` from the queue
//! sequence) and [`NatsSource`] (a durable pull consumer with explicit acknowledgements).
//!
//! * **Dedup key** (sink): `Nats-Msg-Id: <connector>-<seq>`; the stream drops a message whose ID
//!   it saw within its `duplicate_window` (default 2 minutes) and says so in the acknowledgement.
//! * **Re-binding** (source): a pull consumer can vanish (deleted, or removed by the server's
//!   inactivity threshold); any fetch error drops the binding and the next fetch looks the
//!   durable consumer up again, creating it if it is gone.
//! * **Redelivery** (source): messages fetched and not acknowledged (a crash) are delivered
//!   again by the server after the consumer's `ack_wait`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{ConnectError, Failure, Incoming, Outgoing, SinkTarget, SourceOrigin};

fn default_ack_wait_ms() -> u64 {
    30_000
}
fn default_fetch_ms() -> u64 {
    1000
}

/// `nats_sink:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The subject published to (a JetStream stream must capture it).
    pub subject: String,
    /// A stream to create (file storage, capturing `subject`) if none of this name exists.
    #[serde(default)]
    pub stream: Option<String>,
}

/// `nats_source:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The stream read.
    pub stream: String,
    /// The durable pull consumer's name (created if missing, at the start of the stream).
    pub consumer: String,
    /// How long the server waits for an acknowledgement before redelivering (default 30000 ms).
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// How long one fetch waits for messages (default 1000 ms).
    #[serde(default = "default_fetch_ms")]
    pub fetch_ms: u64,
}

async fn connect(url: &str) -> Result<jetstream::Context, Failure> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| Failure::Transient(format!("connecting to {url}: {e}")))?;
    Ok(jetstream::new(client))
}

fn check_url(connector: &str, url: &str) -> Result<(), ConnectError> {
    if url.is_empty() {
        return Err(ConnectError::Config {
            connector: connector.to_owned(),
            key: "url".into(),
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// Queue → JetStream subject.
#[derive(Debug)]
pub struct NatsSink {
    connector: String,
    cfg: NatsSinkConfig,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    /// A sink for connector `connector` (part of every message ID). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an empty URL.
    pub fn new(connector: &str, cfg: NatsSinkConfig) -> Result<NatsSink, ConnectError> {
        check_url(connector, &cfg.url)?;
        Ok(NatsSink {
            connector: connector.to_owned(),
            cfg,
            js: None,
        })
    }

    async fn context(&mut self) -> Result<jetstream::Context, Failure> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let js = connect(&self.cfg.url).await?;
        if let Some(name) = &self.cfg.stream {
            js.get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![self.cfg.subject.clone()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| Failure::Transient(format!("creating stream {name}: {e}")))?;
        }
        self.js = Some(js.clone());
        Ok(js)
    }
}

impl SinkTarget for NatsSink {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        use async_nats::jetstream::context::PublishErrorKind;
        let js = self.context().await?;
        let mut acks = Vec::with_capacity(batch.len());
        let mut rejected = None;
        for (i, m) in batch.iter().enumerate() {
            let publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(m.body.clone()))
                .message_id(format!("{}-{}", self.connector, m.seq));
            match js.send_publish(self.cfg.subject.clone(), publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    rejected = Some(Failure::Rejected {
                        index: i,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(e) => {
                    self.js = None;
                    return Err(Failure::Transient(format!("publish: {e}")));
                }
            }
        }
        let mut duplicates = 0;
        for ack in acks {
            match ack.await {
                Ok(a) => duplicates += u64::from(a.duplicate),
                Err(e) => return Err(Failure::Transient(format!("publish acknowledgement: {e}"))),
            }
        }
        match rejected {
            Some(r) => Err(r),
            None => Ok(duplicates),
        }
    }
}

/// JetStream durable pull consumer → queue.
#[derive(Debug)]
pub struct NatsSource {
    cfg: NatsSourceConfig,
    client: Option<async_nats::Client>,
    consumer: Option<consumer::PullConsumer>,
}

impl NatsSource {
    /// A source for connector `connector`. Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an empty URL.
    pub fn new(connector: &str, cfg: NatsSourceConfig) -> Result<NatsSource, ConnectError> {
        check_url(connector, &cfg.url)?;
        Ok(NatsSource {
            cfg,
            client: None,
            consumer: None,
        })
    }

    async fn bind(&mut self) -> Result<consumer::PullConsumer, Failure> {
        if let Some(c) = &self.consumer {
            return Ok(c.clone());
        }
        let js = match &self.client {
            Some(c) => jetstream::new(c.clone()),
            None => {
                let js = connect(&self.cfg.url).await?;
                self.client = Some(js.client());
                js
            }
        };
        let stream = js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| Failure::Transient(format!("stream {}: {e}", self.cfg.stream)))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.cfg.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.cfg.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_millis(self.cfg.ack_wait_ms),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Failure::Transient(format!("consumer {}: {e}", self.cfg.consumer)))?;
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }
}

impl SourceOrigin for NatsSource {
    type Token = jetstream::Message;

    async fn fetch(&mut self, max: usize) -> Result<Vec<Incoming<jetstream::Message>>, Failure> {
        let consumer = self.bind().await?;
        let mut batch = match consumer
            .fetch()
            .max_messages(max)
            .expires(Duration::from_millis(self.cfg.fetch_ms))
            .messages()
            .await
        {
            Ok(b) => b,
            Err(e) => {
                self.consumer = None;
                return Err(Failure::Transient(format!("fetch: {e}")));
            }
        };
        let mut out = Vec::new();
        while let Some(next) = batch.next().await {
            match next {
                Ok(m) => {
                    let id = m
                        .info()
                        .map_or_else(|_| String::new(), |i| i.stream_sequence.to_string());
                    out.push(Incoming {
                        body: m.payload.to_vec(),
                        id,
                        token: m,
                    });
                }
                Err(e) => {
                    // The consumer may be gone (deleted, inactive): bind again next time.
                    self.consumer = None;
                    if out.is_empty() {
                        return Err(Failure::Transient(format!("fetch: {e}")));
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, tokens: &[jetstream::Message]) -> Result<(), Failure> {
        for m in tokens {
            m.ack()
                .await
                .map_err(|e| Failure::Transient(format!("ack: {e}")))?;
        }
        if let Some(c) = &self.client {
            c.flush()
                .await
                .map_err(|e| Failure::Transient(format!("flushing acks: {e}")))?;
        }
        Ok(())
    }
}
