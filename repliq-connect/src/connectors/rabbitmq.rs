//! RabbitMQ (AMQP 0-9-1): [`RabbitMqSink`] (persistent messages with publisher confirms,
//! `message-id` from the queue sequence) and [`RabbitMqSource`] (a consumer with manual
//! acknowledgements and a prefetch window).
//!
//! * **Reconnecting** is this module's own loop, not lapin's automatic recovery (reported not to
//!   reconnect after a broker restart, lapin #450): any connection or channel error drops the
//!   connection and the next call opens a new one.
//! * **Republishing** (sink): the sink remembers how far the current batch was confirmed; after
//!   a lost connection it publishes again only the messages whose confirm it never received.
//! * **Dedup key** (sink): `message-id: <connector>-<seq>`. RabbitMQ itself does not drop
//!   duplicates; a consumer that must see each message once drops repeated message IDs.
//! * **Redelivery** (source): deliveries not acknowledged when the channel or connection closes
//!   (a crash, a broker restart) are requeued by the broker and delivered again.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use serde::{Deserialize, Serialize};

use crate::{ConnectError, Failure, Incoming, Outgoing, SinkTarget, SourceOrigin};

fn yes() -> bool {
    true
}
fn default_confirm_timeout_ms() -> u64 {
    30_000
}
fn default_fetch_ms() -> u64 {
    1000
}

/// `rabbitmq_sink:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSinkConfig {
    /// `amqp://user:password@host:port/vhost` (the default vhost is `%2f`).
    pub url: String,
    /// The exchange published to (default: the default exchange `""`, which routes by queue
    /// name).
    #[serde(default)]
    pub exchange: String,
    /// The routing key (with the default exchange: the queue's name).
    pub routing_key: String,
    /// A durable queue to declare on connect (bound to `exchange` with `routing_key` unless
    /// `exchange` is the default one).
    #[serde(default)]
    pub declare_queue: Option<String>,
    /// The `x-queue-type` of a declared queue: `quorum` (acknowledgements and confirms synced
    /// through its Raft log; recommended) or `classic` (default: the broker's default).
    #[serde(default)]
    pub queue_type: Option<String>,
    /// How long to wait for the broker's confirms of a batch before reconnecting and
    /// republishing the unconfirmed part (default 30000 ms).
    #[serde(default = "default_confirm_timeout_ms")]
    pub confirm_timeout_ms: u64,
}

/// `rabbitmq_source:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSourceConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The queue consumed.
    pub queue: String,
    /// Declare `queue` (durable) if it does not exist (default true).
    #[serde(default = "yes")]
    pub declare: bool,
    /// The `x-queue-type` it is declared with (`quorum`: acknowledgements survive a broker
    /// crash; a classic queue may deliver again what was acknowledged shortly before one).
    #[serde(default)]
    pub queue_type: Option<String>,
    /// How long one fetch waits for a first delivery (default 1000 ms).
    #[serde(default = "default_fetch_ms")]
    pub fetch_ms: u64,
}

fn check_url(connector: &str, url: &str) -> Result<(), ConnectError> {
    if url.parse::<lapin::uri::AMQPUri>().is_err() {
        return Err(ConnectError::Config {
            connector: connector.to_owned(),
            key: "url".into(),
            reason: format!("{url:?} is not an amqp:// URL"),
        });
    }
    Ok(())
}

async fn connect(url: &str) -> Result<Connection, Failure> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Failure::Transient(format!("connecting: {e}"))),
        Err(_) => Err(Failure::Transient("connecting: timed out after 5 s".into())),
    }
}

/// The broker closed the channel because a message is larger than its `max_message_size`: the
/// limit it names (`message size N is larger than configured max size M`) and its words. The
/// channel closes before the confirms of the messages ahead of it arrive, so the sink learns the
/// limit, republishes those, and refuses the large message itself before sending it.
fn size_limit(e: &lapin::Error) -> Option<(usize, String)> {
    if let lapin::ErrorKind::ProtocolError(amqp) = e.kind()
        && *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    {
        let text = amqp.get_message().to_string();
        let max = text
            .split_once("configured max size ")?
            .1
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        return Some((max, text));
    }
    None
}

/// The arguments of a queue declaration: `x-queue-type` if set.
fn queue_args(queue_type: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(t) = queue_type {
        args.insert("x-queue-type".into(), AMQPValue::LongString(t.into()));
    }
    args
}

async fn close(conn: Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
}

/// Queue → RabbitMQ exchange.
#[derive(Debug)]
pub struct RabbitMqSink {
    connector: String,
    cfg: RabbitMqSinkConfig,
    open: Option<(Connection, Channel)>,
    /// The highest sequence of a confirmed prefix of the batch being sent: a retry of the same
    /// batch skips it.
    confirmed: Option<u64>,
    /// The broker's `max_message_size` and its refusal, once a message exceeded it.
    max_size: Option<(usize, String)>,
}

impl RabbitMqSink {
    /// A sink for connector `connector` (part of every message ID). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a URL that does not parse.
    pub fn new(connector: &str, cfg: RabbitMqSinkConfig) -> Result<RabbitMqSink, ConnectError> {
        check_url(connector, &cfg.url)?;
        if cfg.exchange.is_empty() && cfg.routing_key.is_empty() {
            return Err(ConnectError::Config {
                connector: connector.to_owned(),
                key: "routing_key".into(),
                reason: "must name a queue when publishing to the default exchange".into(),
            });
        }
        Ok(RabbitMqSink {
            connector: connector.to_owned(),
            cfg,
            open: None,
            confirmed: None,
            max_size: None,
        })
    }

    async fn channel(&mut self) -> Result<Channel, Failure> {
        if let Some((conn, ch)) = &self.open {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
            self.drop_connection().await;
        }
        let conn = connect(&self.cfg.url).await?;
        let setup = async {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            if let Some(q) = &self.cfg.declare_queue {
                ch.queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    queue_args(self.cfg.queue_type.as_deref()),
                )
                .await?;
                if !self.cfg.exchange.is_empty() {
                    ch.queue_bind(
                        q.as_str().into(),
                        self.cfg.exchange.as_str().into(),
                        self.cfg.routing_key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                }
            }
            Ok::<Channel, lapin::Error>(ch)
        };
        match setup.await {
            Ok(ch) => {
                self.open = Some((conn, ch.clone()));
                Ok(ch)
            }
            Err(e) => {
                close(conn).await;
                Err(Failure::Transient(format!("opening a channel: {e}")))
            }
        }
    }

    /// The refusal of message `m` (at `index` of the batch), larger than the broker's limit.
    fn oversize(&self, index: usize, m: &Outgoing) -> Failure {
        let (max, why) = self.max_size.clone().unwrap_or_default();
        Failure::Rejected {
            index,
            reason: format!(
                "{} bytes exceed the broker's max_message_size {max} ({why})",
                m.body.len()
            ),
        }
    }

    async fn drop_connection(&mut self) {
        if let Some((conn, _)) = self.open.take() {
            close(conn).await;
        }
    }
}

impl SinkTarget for RabbitMqSink {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        // A retry of the same batch: skip what the broker confirmed before the failure.
        let skip = batch
            .iter()
            .take_while(|m| self.confirmed.is_some_and(|c| m.seq <= c))
            .count();
        let all = &batch[skip..];
        // A message above the broker's known limit ends what is published now; it is rejected
        // once the messages before it are confirmed.
        let too_big = self
            .max_size
            .as_ref()
            .and_then(|(max, _)| all.iter().position(|m| m.body.len() > *max));
        let todo = &all[..too_big.unwrap_or(all.len())];
        if todo.is_empty() {
            return match too_big {
                Some(i) => Err(self.oversize(skip + i, &all[i])),
                None => Ok(0),
            };
        }
        let ch = self.channel().await?;
        let mut confirms = Vec::with_capacity(todo.len());
        let mut failure = None;
        for m in todo {
            let props = BasicProperties::default()
                .with_message_id(format!("{}-{}", self.connector, m.seq).into())
                .with_delivery_mode(2);
            match ch
                .basic_publish(
                    self.cfg.exchange.as_str().into(),
                    self.cfg.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.body,
                    props,
                )
                .await
            {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.cfg.confirm_timeout_ms);
        for (i, confirm) in confirms.into_iter().enumerate() {
            let seq = todo[i].seq;
            match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => {
                    self.confirmed = Some(seq);
                }
                Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                    // Mandatory and unroutable: no queue holds it. May heal (a binding).
                    return Err(Failure::Transient(format!(
                        "message {seq} unroutable ({} {}): no queue is bound to exchange {:?} \
                         with routing key {:?}",
                        returned.reply_code,
                        returned.reply_text,
                        self.cfg.exchange,
                        self.cfg.routing_key
                    )));
                }
                Ok(Ok(Confirmation::Nack(_))) => {
                    return Err(Failure::Transient(format!(
                        "message {seq} nacked by the broker (it could not store it)"
                    )));
                }
                Ok(Err(e)) => {
                    self.drop_connection().await;
                    if let Some(limit) = size_limit(&e) {
                        // Republished (the unconfirmed ones) and refused on the next call.
                        self.max_size = Some(limit);
                    }
                    return Err(Failure::Transient(format!("confirm of message {seq}: {e}")));
                }
                Err(_) => {
                    self.drop_connection().await;
                    return Err(Failure::Transient(format!(
                        "no confirm of message {seq} within {} ms",
                        self.cfg.confirm_timeout_ms
                    )));
                }
            }
        }
        if let Some(e) = failure {
            self.drop_connection().await;
            return Err(Failure::Transient(format!("publish: {e}")));
        }
        match too_big {
            Some(i) => Err(self.oversize(skip + i, &all[i])),
            None => Ok(0),
        }
    }
}

/// What acknowledges a RabbitMQ delivery: its tag on the channel of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RabbitMqToken {
    generation: u64,
    tag: u64,
}

struct Bound {
    conn: Connection,
    channel: Channel,
    consumer: Consumer,
}

/// RabbitMQ queue → repliq queue.
pub struct RabbitMqSource {
    connector: String,
    cfg: RabbitMqSourceConfig,
    bound: Option<Bound>,
    /// Counts connections: a token of an older one cannot be acknowledged (its deliveries were
    /// requeued by the broker when that channel closed).
    generation: u64,
}

impl std::fmt::Debug for RabbitMqSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqSource")
            .field("connector", &self.connector)
            .field("cfg", &self.cfg)
            .field("bound", &self.bound.is_some())
            .field("generation", &self.generation)
            .finish()
    }
}

impl RabbitMqSource {
    /// A source for connector `connector` (its consumer tag). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a URL that does not parse or an empty queue name.
    pub fn new(connector: &str, cfg: RabbitMqSourceConfig) -> Result<RabbitMqSource, ConnectError> {
        check_url(connector, &cfg.url)?;
        if cfg.queue.is_empty() {
            return Err(ConnectError::Config {
                connector: connector.to_owned(),
                key: "queue".into(),
                reason: "must not be empty".into(),
            });
        }
        Ok(RabbitMqSource {
            connector: connector.to_owned(),
            cfg,
            bound: None,
            generation: 0,
        })
    }

    async fn bind(&mut self, max: usize) -> Result<(), Failure> {
        if let Some(b) = &self.bound {
            if b.conn.status().connected() && b.channel.status().connected() {
                return Ok(());
            }
            self.unbind().await;
        }
        let conn = connect(&self.cfg.url).await?;
        let setup = async {
            let ch = conn.create_channel().await?;
            // Room for the next batch while this one is enqueued.
            let prefetch = u16::try_from(max.saturating_mul(2)).unwrap_or(u16::MAX);
            ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
            if self.cfg.declare {
                ch.queue_declare(
                    self.cfg.queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    queue_args(self.cfg.queue_type.as_deref()),
                )
                .await?;
            }
            let consumer = ch
                .basic_consume(
                    self.cfg.queue.as_str().into(),
                    format!("repliq-{}", self.connector).into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((ch, consumer))
        };
        match setup.await {
            Ok((channel, consumer)) => {
                self.generation += 1;
                self.bound = Some(Bound {
                    conn,
                    channel,
                    consumer,
                });
                Ok(())
            }
            Err(e) => {
                close(conn).await;
                Err(Failure::Transient(format!(
                    "consuming queue {}: {e}",
                    self.cfg.queue
                )))
            }
        }
    }

    async fn unbind(&mut self) {
        if let Some(b) = self.bound.take() {
            close(b.conn).await;
        }
    }
}

impl SourceOrigin for RabbitMqSource {
    type Token = RabbitMqToken;

    async fn fetch(&mut self, max: usize) -> Result<Vec<Incoming<RabbitMqToken>>, Failure> {
        self.bind(max).await?;
        let generation = self.generation;
        let Some(b) = self.bound.as_mut() else {
            return Err(Failure::Transient("not connected".into()));
        };
        let mut out = Vec::new();
        let mut wait = Duration::from_millis(self.cfg.fetch_ms);
        let mut broken = None;
        while out.len() < max {
            match tokio::time::timeout(wait, b.consumer.next()).await {
                Err(_) => break,
                Ok(Some(Ok(d))) => {
                    let id = d
                        .properties
                        .message_id()
                        .as_ref()
                        .map_or_else(|| format!("delivery-{}", d.delivery_tag), |m| m.to_string());
                    out.push(Incoming {
                        token: RabbitMqToken {
                            generation,
                            tag: d.delivery_tag,
                        },
                        id,
                        body: d.data,
                    });
                    // After the first delivery, take what follows closely.
                    wait = Duration::from_millis(2);
                }
                Ok(Some(Err(e))) => {
                    broken = Some(format!("consumer: {e}"));
                    break;
                }
                Ok(None) => {
                    broken = Some(format!(
                        "the broker cancelled the consumer of {}",
                        self.cfg.queue
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = broken {
            // What was received on this channel is requeued by the broker when it closes.
            self.unbind().await;
            return Err(Failure::Transient(reason));
        }
        Ok(out)
    }

    async fn ack(&mut self, tokens: &[RabbitMqToken]) -> Result<(), Failure> {
        let generation = self.generation;
        let Some(last) = tokens
            .iter()
            .filter(|t| t.generation == generation)
            .map(|t| t.tag)
            .max()
        else {
            // Deliveries of a closed channel: the broker requeued them already.
            return Ok(());
        };
        let Some(b) = &self.bound else {
            return Ok(());
        };
        if let Err(e) = b
            .channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await
        {
            tracing::warn!(connector = %self.connector, error = %e, "acknowledgement failed; the broker will deliver the batch again");
            self.unbind().await;
        }
        Ok(())
    }
}
