//! The connectors, one module (and cargo feature) each.

#[cfg(any(feature = "slack", feature = "influxdb"))]
pub(crate) mod http;
#[cfg(feature = "influxdb")]
pub(crate) mod influxdb;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "rabbitmq")]
pub(crate) mod rabbitmq;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "slack")]
pub(crate) mod slack;
