//! Remote producers and consumers (feature `client`): write and read a queue from any host,
//! through the `repliqd` of any node, over gRPC (`repliq/proto/client.proto`,
//! `repliq.client.v1`). See `docs/CLIENTS.md`.
//!
//! * [`RemoteProducer<T>`]: an idempotent producer. It numbers its records; a batch retried
//!   after a lost connection is acknowledged again by the node without being written twice.
//! * [`RemoteConsumer<T>`]: a pull consumer with a durable name; records negatively
//!   acknowledged, not acknowledged within `ack_wait`, or left when a stream ends are delivered
//!   again (at-least-once), up to `max_deliver` times, then go to a dead-letter queue.
//!
//! * [`RawProducer`], [`RawConsumer`] and [`describe`]: the same for tools without the Rust
//!   type, with records as archived bytes; [`describe`] gives the queue's type and schema, with
//!   which [`descriptor::from_json`](crate::descriptor::from_json) and
//!   [`descriptor::to_json`](crate::descriptor::to_json) turn JSON into records and back.
//!
//! Both follow a node's redirect to the queue's primary. With the feature `client-tls` they
//! speak mutual TLS to nodes that run with `server.tls` ([`ClientTls`], set in
//! [`ProducerOptions`] and [`ConsumerOptions`]); the node then authorizes the certificate's
//! identity per queue (docs/CLIENTS.md, "Authorization").
//!
//! ```no_run
//! # #[allow(dead_code)]
//! # async fn demo() -> Result<(), repliq::client::ClientError> {
//! use repliq::client::{RemoteConsumer, RemoteProducer};
//!
//! #[repliq::message(name = "shop.Order")]
//! #[derive(Debug)]
//! struct Order {
//!     id: u64,
//! }
//!
//! let mut producer = RemoteProducer::<Order>::connect("http://node-a:31337", "orders", "web-1", 1).await?;
//! producer.send_batch(&[Order { id: 1 }, Order { id: 2 }]).await?;
//!
//! let mut consumer = RemoteConsumer::<Order>::connect("http://node-b:31337", "orders", "billing").await?;
//! while let Some(d) = consumer.next_timeout(std::time::Duration::from_secs(1)).await? {
//!     println!("{} (delivery {}): {:?}", d.seq, d.delivery_count, d.message);
//!     consumer.ack(d.seq).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod connect;
mod consumer;
mod describe;
mod error;
mod producer;
#[cfg(feature = "client-tls")]
mod tls;
mod typed_consumer;
mod typed_producer;

pub use consumer::{ConsumerOptions, ConsumerSettings, Delivery, RawConsumer};
#[cfg(feature = "client-tls")]
pub use describe::describe_tls;
pub use describe::{QueueDescription, describe};
pub use error::{ClientError, Refused};
pub use producer::{BatchAck, ProducerOptions, RawProducer};
#[cfg(feature = "client-tls")]
pub use tls::ClientTls;
pub use typed_consumer::RemoteConsumer;
pub use typed_producer::RemoteProducer;

/// Messages and the `Client` service of `repliq.client.v1`, generated from
/// `repliq/proto/client.proto` (committed; `tests/tests/client_proto.rs` checks it for drift).
#[allow(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    include!("proto/repliq.client.v1.rs");
}
