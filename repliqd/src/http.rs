//! The HTTP endpoints of `repliqd`: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// What the endpoints read.
#[derive(Debug)]
pub struct HttpState {
    /// The metrics to expose.
    pub metrics: Metrics,
    /// Set once the daemon serves gRPC and has started its replication tasks; cleared when it
    /// begins to shut down.
    pub ready: AtomicBool,
}

/// The router of the HTTP endpoints.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    // Reading the queues' files is blocking I/O: keep it off the async workers.
    let state2 = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || state2.metrics.encode()).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// 200 when the daemon serves and every queue it is primary of has as many replicas up as
/// synchronous producers need; 503 with the reasons otherwise. Replicas that are down without
/// degrading a queue are listed in the 200 body.
async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    }
    let (degraded, report) = state.metrics.replication.health_report();
    let body = if report.is_empty() {
        "ready\n".to_owned()
    } else {
        format!(
            "{}\n{report}\n",
            if degraded { "not ready" } else { "ready" }
        )
    };
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, body).into_response()
}
