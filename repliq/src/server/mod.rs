//! The library half of the `repliqd` node daemon: [`run`] serves gRPC (replication) and HTTP
//! (`/metrics`, `/healthz`, `/readyz`) until its shutdown future completes, then drains.

pub mod config;
pub mod http;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::Config;
use tokio::net::TcpListener;

use crate::QueueError;

/// The addresses a running daemon listens on (useful with port 0 in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// gRPC.
    pub grpc: SocketAddr,
    /// HTTP endpoints.
    pub http: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, QueueError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| QueueError::io(format!("binding the {what} listener to {addr}"), e))
}

/// Runs the daemon until `shutdown` completes. `on_bound` is called once both listeners are
/// bound, with their addresses.
///
/// # Errors
///
/// [`QueueError::Io`] if a listener cannot be bound or the persistence path cannot be created.
pub async fn run(
    config: Config,
    node_name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound),
) -> Result<(), QueueError> {
    let root = config.queue.persistence.path.clone();
    std::fs::create_dir_all(&root)
        .map_err(|e| QueueError::io(format!("creating {}", root.display()), e))?;
    let grpc_listener = bind(config.server.grpc_listen, "gRPC").await?;
    let http_listener = bind(config.server.http_listen, "HTTP").await?;
    let bound = Bound {
        grpc: grpc_listener
            .local_addr()
            .map_err(|e| QueueError::io("reading the gRPC address", e))?,
        http: http_listener
            .local_addr()
            .map_err(|e| QueueError::io("reading the HTTP address", e))?,
    };
    tracing::info!(node = %node_name, grpc = %bound.grpc, http = %bound.http, root = %root.display(), "repliqd listening");

    let state = Arc::new(http::HttpState {
        metrics: metrics::Metrics::new(root.clone()),
        ready: false.into(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(
        axum::serve(http_listener, http::router(Arc::clone(&state)))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .into_future(),
    );

    state.ready.store(true, Ordering::Release);
    on_bound(bound);
    shutdown.await;
    tracing::info!("shutting down");
    state.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    drop(grpc_listener);
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(QueueError::io("serving HTTP", e)),
        Err(e) => return Err(QueueError::Other(format!("the HTTP task failed: {e}"))),
    }
    tracing::info!("stopped");
    Ok(())
}
