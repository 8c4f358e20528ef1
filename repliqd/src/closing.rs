//! Ends the gRPC responses of a service when the daemon stops.
//!
//! A primary keeps its replication stream to a replica open for as long as it lives, and tonic's
//! graceful shutdown waits for open streams: without this, a replica's daemon waited the whole
//! shutdown grace on SIGTERM. [`Closing`] wraps the service so every response body ends, as soon
//! as the stop signal fires, with the trailers `grpc-status: 14` (UNAVAILABLE) and a message
//! saying the node shuts down. The primary then sees an ended stream (it retries, and finds the
//! listener closed), and the server's graceful shutdown completes at once. A replica that stops
//! between two frames loses nothing: what it acknowledged is durable, and the primary resends
//! the rest when it is back.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::server::NamedService;

/// A service whose response bodies end when `stop` becomes `true`.
#[derive(Debug, Clone)]
pub struct Closing<S> {
    inner: S,
    stop: watch::Receiver<bool>,
}

impl<S> Closing<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, stop: watch::Receiver<bool>) -> Self {
        Closing { inner, stop }
    }
}

impl<S: NamedService> NamedService for Closing<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for Closing<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let mut stop = self.stop.clone();
        Box::pin(async move {
            let response = response.await?;
            let closed: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
                // A dropped sender (the daemon is gone) also ends the stream.
                let _ = stop.wait_for(|s| *s).await;
            });
            Ok(response.map(|inner| {
                Body::new(ClosingBody {
                    inner,
                    closed,
                    done: false,
                })
            }))
        })
    }
}

struct ClosingBody {
    inner: Body,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl http_body::Body for ClosingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.closed.as_mut().poll(cx).is_ready() {
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
            trailers.insert(
                "grpc-message",
                http::HeaderValue::from_static("the%20node%20is%20shutting%20down"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.done {
            http_body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}
