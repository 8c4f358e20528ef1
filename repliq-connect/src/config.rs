//! What a connector is configured with: [`ConnectorConfig`], one entry of `repliqd`'s
//! `connectors:` list (any serde format; `repliqd` reads YAML).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConnectError;

/// One connector: a queue, a direction and a remote system.
///
/// ```yaml
/// name: orders-to-redis        # also the sink's consumer cursor name
/// queue: orders                # a queue directory (relative: under queue.persistence.path)
/// format: json                 # json (default) | archived
/// dead_letter: orders.dead     # a repliq queue of DeadLetter (created if missing)
/// batch: 256                   # messages per round trip
/// retry: { initial_ms: 50, max_ms: 5000 }
/// redis_sink:
///   url: redis://127.0.0.1:6379/
///   stream: orders
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Unique among the node's connectors; a sink's consumer cursor is named after it
    /// (`connect.<name>`: so at most 32 bytes).
    pub name: String,
    /// The queue directory the connector reads (sink) or writes (source).
    pub queue: PathBuf,
    /// How messages cross ([`Format::Json`] unless set).
    #[serde(default)]
    pub format: Format,
    /// The dead-letter queue directory. Unset: a permanent failure stops the connector.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Messages per round trip to the remote (default 256).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Backoff between retries of transient failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Which connector, with its own settings.
    #[serde(flatten)]
    pub kind: ConnectorKind,
    /// Keys no field took: refused by [`ConnectorConfig::check`] (a typo must not be ignored).
    #[serde(flatten, default, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

fn default_batch() -> usize {
    256
}

/// The connector and its settings: exactly one key of the entry names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectorKind {
    /// Queue → Redis stream.
    #[cfg(feature = "redis")]
    RedisSink(crate::RedisSinkConfig),
    /// Redis stream (consumer group) → queue.
    #[cfg(feature = "redis")]
    RedisSource(crate::RedisSourceConfig),
    /// Queue → NATS JetStream subject.
    #[cfg(feature = "nats")]
    NatsSink(crate::NatsSinkConfig),
    /// NATS JetStream durable pull consumer → queue.
    #[cfg(feature = "nats")]
    NatsSource(crate::NatsSourceConfig),
    /// Queue → RabbitMQ exchange (publisher confirms).
    #[cfg(feature = "rabbitmq")]
    RabbitmqSink(crate::RabbitMqSinkConfig),
    /// RabbitMQ queue (manual acknowledgements) → queue.
    #[cfg(feature = "rabbitmq")]
    RabbitmqSource(crate::RabbitMqSourceConfig),
    /// Queue → Slack incoming webhook (text rendered by rules).
    #[cfg(feature = "slack")]
    SlackSink(crate::SlackSinkConfig),
    /// Queue → InfluxDB points (line protocol over HTTP).
    #[cfg(feature = "influxdb")]
    InfluxdbSink(crate::InfluxDbSinkConfig),
    /// Queue → Kafka topic partition (acks = all).
    #[cfg(feature = "kafka")]
    KafkaSink(crate::KafkaSinkConfig),
    /// Kafka topic partition (offset stored beside the queue) → queue.
    #[cfg(feature = "kafka")]
    KafkaSource(crate::KafkaSourceConfig),
}

impl ConnectorKind {
    /// `redis_sink`, ...: the config key.
    pub fn key(&self) -> &'static str {
        match *self {
            #[cfg(feature = "redis")]
            ConnectorKind::RedisSink(_) => "redis_sink",
            #[cfg(feature = "redis")]
            ConnectorKind::RedisSource(_) => "redis_source",
            #[cfg(feature = "nats")]
            ConnectorKind::NatsSink(_) => "nats_sink",
            #[cfg(feature = "nats")]
            ConnectorKind::NatsSource(_) => "nats_source",
            #[cfg(feature = "rabbitmq")]
            ConnectorKind::RabbitmqSink(_) => "rabbitmq_sink",
            #[cfg(feature = "rabbitmq")]
            ConnectorKind::RabbitmqSource(_) => "rabbitmq_source",
            #[cfg(feature = "slack")]
            ConnectorKind::SlackSink(_) => "slack_sink",
            #[cfg(feature = "influxdb")]
            ConnectorKind::InfluxdbSink(_) => "influxdb_sink",
            #[cfg(feature = "kafka")]
            ConnectorKind::KafkaSink(_) => "kafka_sink",
            #[cfg(feature = "kafka")]
            ConnectorKind::KafkaSource(_) => "kafka_source",
        }
    }
}

/// How a message crosses between the queue and the remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// JSON text, rendered from and encoded to the queue's stored schema: what `repliq cat`
    /// prints. A source dead-letters JSON that does not fit the type.
    #[default]
    Json,
    /// The archived bytes as stored (for a repliq on the other side, or any rkyv reader). A
    /// source validates them against the schema and dead-letters what is not valid.
    Archived,
}

/// Exponential backoff for transient failures: `initial_ms`, doubled per attempt up to `max_ms`,
/// forever (a transient failure is one that may heal: a connection, a full queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay, in milliseconds (default 50).
    #[serde(default = "default_initial")]
    pub initial_ms: u64,
    /// Largest delay, in milliseconds (default 5000).
    #[serde(default = "default_max")]
    pub max_ms: u64,
}

fn default_initial() -> u64 {
    50
}
fn default_max() -> u64 {
    5000
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: default_initial(),
            max_ms: default_max(),
        }
    }
}

impl RetryConfig {
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let ms = self
            .initial_ms
            .max(1)
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_ms.max(1));
        Duration::from_millis(ms)
    }
}

impl ConnectorConfig {
    /// The consumer cursor a sink reads through.
    pub fn cursor_name(&self) -> String {
        format!("connect.{}", self.name)
    }

    /// Resolves relative queue paths against `base` (the daemon's persistence path).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.queue.is_relative() {
            self.queue = base.join(&self.queue);
        }
        if let Some(d) = self.dead_letter.as_mut()
            && d.is_relative()
        {
            *d = base.join(&*d);
        }
    }

    /// Checks what can be checked without opening anything.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] naming the connector and the key.
    pub fn check(&self) -> Result<(), ConnectError> {
        let bad = |key: &str, reason: String| {
            Err(ConnectError::Config {
                connector: self.name.clone(),
                key: key.to_owned(),
                reason,
            })
        };
        if let Some(key) = self.unknown.keys().next() {
            return bad(
                key,
                "unknown key (expected name, queue, format, dead_letter, batch, retry and one \
                 connector key such as redis_sink)"
                    .into(),
            );
        }
        if self.name.is_empty() || self.cursor_name().len() > 40 {
            return bad("name", "must be 1 to 32 bytes".into());
        }
        if self.batch == 0 || self.batch > 65_536 {
            return bad("batch", format!("{} is not in 1..=65536", self.batch));
        }
        if self.retry.initial_ms > self.retry.max_ms {
            return bad(
                "retry",
                format!(
                    "initial_ms {} exceeds max_ms {}",
                    self.retry.initial_ms, self.retry.max_ms
                ),
            );
        }
        if self.dead_letter.as_deref() == Some(self.queue.as_path()) {
            return bad("dead_letter", "must be another queue than `queue`".into());
        }
        Ok(())
    }
}
