//! Connectors for repliq: **sinks** that forward a queue's messages to another system and
//! **sources** that enqueue another system's messages, at-least-once, nothing lost.
//!
//! Each connector is compiled in behind a cargo feature (`redis`: Redis Streams; `nats`: NATS JetStream; `rabbitmq`: RabbitMQ; `slack`: Slack webhooks; `influxdb`: InfluxDB; `kafka`: Kafka). They share one
//! runtime with one set of rules:
//!
//! * A sink tails its queue through its own durable consumer cursor (a [`repliq::RawQueue`]
//!   named after the connector) and moves the cursor only after the remote confirmed the write.
//!   A sink killed at any instruction resends at most the batch it had not committed.
//! * A source acknowledges the remote only after the enqueue returned (on a synchronously
//!   replicated queue: after the replicas acknowledged).
//! * Messages cross as JSON, rendered from and encoded to the queue's stored schema
//!   (`schema.json`; no Rust type needed), or as the archived bytes themselves
//!   ([`Format`]).
//! * Dedup keys come from the queue's sequence where the target supports them (Redis: the entry
//!   ID `<seq>-1`, so a resent entry is refused by the stream as already present).
//! * A message the remote rejects permanently, or JSON that does not fit the queue's type, goes
//!   to a **dead-letter queue** (a repliq queue of [`DeadLetter`]) with the reason, before the
//!   record counts as done. Without a dead-letter queue such a failure stops the connector:
//!   nothing is ever dropped silently. Transient errors are retried with exponential backoff.
//! * Counters for throughput, retries, duplicates refused, dead letters and lag are in
//!   [`Stats`].
//!
//! Connectors are configured with [`ConnectorConfig`] (the `connectors:` list of `repliqd`'s
//! config) and started with [`spawn`]; see `docs/CONNECTORS.md`.

mod config;
mod connectors;
mod dead_letter;
mod error;
mod format;
mod runtime;

pub use config::{ConnectorConfig, ConnectorKind, Format, RetryConfig};
#[cfg(feature = "influxdb")]
pub use connectors::influxdb::{InfluxDbSink, InfluxDbSinkConfig, Precision};
#[cfg(feature = "kafka")]
pub use connectors::kafka::{
    KafkaOutOfRange, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig, KafkaStart,
    SEQ_HEADER as KAFKA_SEQ_HEADER, offset_file as kafka_offset_file,
};
#[cfg(feature = "nats")]
pub use connectors::nats::{NatsSink, NatsSinkConfig, NatsSource, NatsSourceConfig};
#[cfg(feature = "rabbitmq")]
pub use connectors::rabbitmq::{
    RabbitMqSink, RabbitMqSinkConfig, RabbitMqSource, RabbitMqSourceConfig, RabbitMqToken,
};
#[cfg(feature = "redis")]
pub use connectors::redis::{RedisSink, RedisSinkConfig, RedisSource, RedisSourceConfig};
#[cfg(feature = "slack")]
pub use connectors::slack::{SlackCondition, SlackRule, SlackSink, SlackSinkConfig};
pub use dead_letter::{DeadLetter, DeadLetters};
pub use error::{ConnectError, Failure};
pub use runtime::{
    Encoder, Incoming, Outgoing, Running, SinkTarget, SourceOrigin, Stats, StatsSnapshot, run_sink,
    run_source, spawn,
};
