//! The client service (`repliq.client.v1.Client`, `repliq/proto/client.proto`): remote
//! producers and pull consumers on the daemon's gRPC port, beside replication.
//!
//! * `produce`: one stream per producer; its batches go to the queue's append thread
//!   (`appender`), which keeps the idempotent producers' table ([`producers`]).
//! * `consume`: one stream per consumer, reading through the queue's durable cursor; the
//!   consumer's deliveries in flight (`inflight`: acknowledgements in any order, negative
//!   acknowledgements, `ack_wait`, `max_deliver`) outlive the stream, and records delivered
//!   `max_deliver` times go to a dead-letter queue (`dlq`).
//! * `describe`: a queue's message type and `schema.json` (for clients without the Rust type).
//! * A node that is not the queue's primary answers with a redirect (`refusal`) naming the
//!   primary's address from discovery.

mod appender;
pub mod authorize;
mod consume;
mod credits;
mod describe;
mod dlq;
mod inflight;
mod produce;
pub mod producers;
mod refusal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use repliq::client::proto::client_server::{Client, ClientServer};
use repliq::client::proto::{
    ConsumeReply, ConsumeRequest, DescribeReply, DescribeRequest, ProduceReply, ProduceRequest,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::discovery::PeerSet;
use crate::metrics::ClientMetrics;
pub use refusal::Refusal;

/// Replies queued per stream before the stream's task waits for the client to read.
const OUTBOUND: usize = 16;

/// The service's shared state.
#[derive(Debug, Clone)]
pub struct ClientService {
    root: PathBuf,
    node: String,
    peers: watch::Receiver<PeerSet>,
    appenders: appender::Appenders,
    /// The newest stream of each (queue, consumer name): older ones end as superseded.
    sessions: Arc<Mutex<HashMap<(PathBuf, String), u64>>>,
    next_session: Arc<std::sync::atomic::AtomicU64>,
    /// Each durable consumer's state between its streams (what is in flight).
    consumers: Arc<Mutex<HashMap<(PathBuf, String), consume::Slot>>>,
    metrics: ClientMetrics,
    /// `server.clients.rules` (none: no authorization).
    rules: authorize::Rules,
}

impl ClientService {
    /// The service of a node named `node` serving the queues under `root`; redirects name the
    /// addresses of `peers`; consumers' redeliveries and dead letters are counted in `metrics`.
    #[must_use]
    pub fn new(
        root: PathBuf,
        node: String,
        peers: watch::Receiver<PeerSet>,
        metrics: ClientMetrics,
    ) -> ClientService {
        ClientService {
            root,
            node,
            peers,
            appenders: appender::Appenders::default(),
            sessions: Arc::default(),
            next_session: Arc::default(),
            consumers: Arc::default(),
            metrics,
            rules: authorize::Rules::default(),
        }
    }

    /// Authorizes each stream by `rules` (`server.clients.rules`): a client certificate's
    /// identity may produce to (`write`) and consume from (`read`) the queues a rule allows.
    #[must_use]
    pub fn with_rules(mut self, rules: Vec<crate::config::ClientRule>) -> ClientService {
        self.rules = authorize::Rules::new(rules);
        self
    }

    /// Whether `caller` may do `right` on queue `queue` (a `PermissionDenied` refusal if not).
    fn authorize(
        &self,
        caller: &authorize::Caller,
        queue: &str,
        right: crate::config::ClientRight,
    ) -> Result<(), Refusal> {
        self.rules.check(caller, queue, right, &self.metrics)
    }

    /// The state slot of consumer `key.1` of the queue at `key.0`.
    fn consumer_slot(&self, key: &(PathBuf, String)) -> consume::Slot {
        let mut consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(consumers.entry(key.clone()).or_default())
    }

    /// The tonic service.
    #[must_use]
    pub fn into_server(self) -> ClientServer<ClientService> {
        ClientServer::new(self)
    }

    /// The directory of queue `name`, refusing names that are not one directory name.
    fn queue_dir(&self, name: &str) -> Result<PathBuf, Refusal> {
        let bad = name.is_empty()
            || name.len() > 255
            || name.starts_with('.')
            || name.contains(['/', '\\', '\0']);
        if bad {
            return Err(Refusal::bad_request(format!(
                "{name:?} is not a queue name (one directory name under the persistence path, \
                 not starting with '.')"
            )));
        }
        Ok(self.root.join(name))
    }

    /// The refusal with a redirect's address filled in from discovery.
    fn finish(&self, refusal: Refusal) -> Refusal {
        let peers = self.peers.borrow();
        refusal.with_address(|name| {
            peers
                .peers
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.address.clone())
        })
    }
}

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A stream's span adopts the caller's trace from the `traceparent` (and `tracestate`)
/// metadata of the request, when it carries them.
fn follow_metadata(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    if let Some(parent) = text("traceparent") {
        crate::telemetry::follow_remote_parent(span, parent, text("tracestate"));
    }
}

#[tonic::async_trait]
impl Client for ClientService {
    type ProduceStream = ReplyStream<ProduceReply>;
    type ConsumeStream = ReplyStream<ConsumeReply>;

    async fn produce(
        &self,
        request: Request<Streaming<ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND);
        let span = tracing::info_span!(
            parent: None, "client.produce",
            node = %self.node, queue = tracing::field::Empty, producer = tracing::field::Empty,
            producer_epoch = tracing::field::Empty,
        );
        follow_metadata(&span, request.metadata());
        let caller = authorize::Caller::of(request.extensions());
        let serve = produce::serve(self.clone(), caller, request.into_inner(), tx);
        tokio::spawn(serve.instrument(span));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn consume(
        &self,
        request: Request<Streaming<ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND);
        let span = tracing::info_span!(
            parent: None, "client.consume",
            node = %self.node, queue = tracing::field::Empty, consumer = tracing::field::Empty,
        );
        follow_metadata(&span, request.metadata());
        let caller = authorize::Caller::of(request.extensions());
        let serve = consume::serve(self.clone(), caller, request.into_inner(), tx);
        tokio::spawn(serve.instrument(span));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeReply>, Status> {
        let span = tracing::info_span!(
            parent: None, "client.describe",
            node = %self.node, queue = %request.get_ref().queue,
        );
        follow_metadata(&span, request.metadata());
        let caller = authorize::Caller::of(request.extensions());
        let queue = request.into_inner().queue;
        let reply = describe::answer(self, &caller, &queue)
            .instrument(span)
            .await;
        Ok(Response::new(reply))
    }
}
