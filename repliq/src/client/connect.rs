//! Opening a stream on a node and following its redirect to the queue's primary.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::ClientError;
use super::proto::client_client::ClientClient;
use super::proto::{Refusal, refusal};

/// How many redirects one open follows (a primary that moved twice meanwhile is retried later).
const MAX_REDIRECTS: usize = 3;
/// Connecting to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests queued on a stream before `send` waits.
const OUTBOUND: usize = 16;

/// An open stream: the node's address, what the client sends, what the node answers.
pub(crate) struct Open<Req, Rep> {
    pub node: String,
    pub tx: mpsc::Sender<Req>,
    pub rx: Streaming<Rep>,
}

/// What a node answers first.
pub(crate) enum First<O> {
    Opened(O),
    Refused(Refusal),
    Other,
}

/// `host:port` or a URI → a URI tonic connects to.
fn uri(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

async fn channel(addr: &str) -> Result<Channel, ClientError> {
    tonic::transport::Endpoint::from_shared(uri(addr))
        .map_err(|e| ClientError::transport(addr, format!("not an address: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect()
        .await
        .map_err(|e| ClientError::transport(addr, e))
}

/// Opens a stream on `addr` with `open` as its first request (`call` starts the RPC,
/// `first` reads the node's first answer) and follows redirects to the primary. The request
/// carries `traceparent` (a W3C trace context) as metadata, if given and valid as a header.
pub(crate) async fn open<Req, Rep, O, F, Fut>(
    addr: &str,
    open: Req,
    traceparent: Option<&str>,
    call: F,
    first: impl Fn(Rep) -> First<O>,
) -> Result<(Open<Req, Rep>, O), ClientError>
where
    Req: Clone + Send + 'static,
    F: Fn(ClientClient<Channel>, tonic::Request<ReceiverStream<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Streaming<Rep>>, tonic::Status>>,
{
    let mut node = addr.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let client = ClientClient::new(channel(&node).await?);
        let (tx, rx) = mpsc::channel(OUTBOUND);
        tx.send(open.clone())
            .await
            .map_err(|_| ClientError::transport(&node, "the stream closed"))?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(value) = traceparent.and_then(|t| t.parse().ok()) {
            request.metadata_mut().insert("traceparent", value);
        }
        let mut inbound = call(client, request)
            .await
            .map_err(|s| ClientError::transport(&node, s))?
            .into_inner();
        let reply = inbound
            .message()
            .await
            .map_err(|s| ClientError::transport(&node, s))?
            .ok_or_else(|| ClientError::transport(&node, "the node ended the stream"))?;
        match first(reply) {
            First::Opened(o) => {
                return Ok((
                    Open {
                        node,
                        tx,
                        rx: inbound,
                    },
                    o,
                ));
            }
            First::Refused(r) => match &r.reason {
                Some(refusal::Reason::Redirect(to)) if !to.address.is_empty() => {
                    node.clone_from(&to.address);
                }
                _ => return Err(ClientError::refusal(&node, r)),
            },
            First::Other => {
                return Err(ClientError::protocol(
                    &node,
                    "the first answer was not Opened",
                ));
            }
        }
    }
    Err(ClientError::transport(
        addr,
        format!("more than {MAX_REDIRECTS} redirects"),
    ))
}
