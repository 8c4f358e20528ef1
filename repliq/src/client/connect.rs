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

/// How the client speaks TLS (feature `client-tls`); without the feature, a type with no value.
#[cfg(feature = "client-tls")]
pub(crate) use super::tls::ClientTls as Tls;
/// Without the feature `client-tls` no TLS configuration can be made.
#[cfg(not(feature = "client-tls"))]
#[derive(Debug, Clone)]
pub(crate) enum Tls {}

/// `host:port` or a URI → a URI tonic connects to: `https://` with TLS, `http://` without.
fn uri(addr: &str, tls: bool) -> String {
    let bare = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    format!("{}://{bare}", if tls { "https" } else { "http" })
}

/// Connects to `addr`; with `tls`, the node's certificate must be valid for `name` (a redirect's
/// primary), or for the address's host when `name` is `None`.
pub(crate) async fn channel(
    addr: &str,
    tls: Option<&Tls>,
    name: Option<&str>,
) -> Result<Channel, ClientError> {
    let uri = uri(addr, tls.is_some());
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| ClientError::transport(addr, format!("not an address: {e}")))?;
    #[cfg(feature = "client-tls")]
    if let Some(tls) = tls {
        let host = endpoint.uri().host().unwrap_or_default().to_owned();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        endpoint = endpoint
            .tls_config(tls.config(name.unwrap_or(host))?)
            .map_err(|e| ClientError::Tls {
                reason: format!("for {addr}: {e}"),
            })?;
    }
    #[cfg(not(feature = "client-tls"))]
    let _ = (tls, name);
    endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_adaptive_window(true);
    endpoint
        .connect()
        .await
        .map_err(|e| ClientError::transport(addr, transport_reason(&e)))
}

/// tonic's error with its causes (a refused TLS handshake says why only in its source).
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

/// Opens a stream on `addr` with `open` as its first request (`call` starts the RPC,
/// `first` reads the node's first answer) and follows redirects to the primary. The request
/// carries `traceparent` (a W3C trace context) as metadata, if given and valid as a header.
pub(crate) async fn open<Req, Rep, O, F, Fut>(
    addr: &str,
    tls: Option<&Tls>,
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
    // After a redirect: the primary's node name, which its certificate carries.
    let mut name: Option<String> = None;
    for _ in 0..=MAX_REDIRECTS {
        let client = ClientClient::new(channel(&node, tls, name.as_deref()).await?);
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
                    name = Some(to.primary.clone());
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
