//! The HTTP endpoints of `repliqd`: `/metrics`, `/healthz`, `/readyz`, and the live console
//! (`/ui`, `/api/v1/status`; see [`crate::ui`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE, Metrics, TEXT_CONTENT_TYPE, to_prometheus_text};
use crate::supervise::Health;

/// What the endpoints read.
#[derive(Debug)]
pub struct HttpState {
    /// The metrics to expose.
    pub metrics: Metrics,
    /// The daemon's tasks, gRPC and discovery.
    pub health: Arc<Health>,
}

/// The router of the HTTP endpoints, with `more` routes of the layers above (the live console)
/// over the same state.
pub fn router(state: Arc<HttpState>, more: Router<Arc<HttpState>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(more)
        .with_state(state)
}

/// OpenMetrics unless the client asks for the Prometheus text format only (`Accept:
/// text/plain` without `application/openmetrics-text`), as `promtool` and older scrapers do.
async fn metrics(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let text = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    // Reading the queues' files is blocking I/O: keep it off the async workers.
    let state2 = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || state2.metrics.encode()).await {
        Ok(Ok(body)) if text => (
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            to_prometheus_text(&body),
        )
            .into_response(),
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// Liveness: 200 `ok` while every long-running task of the daemon runs; 503 naming the task
/// that stopped otherwise (the daemon then exits on its own, see [`crate::supervise`]).
async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    let failures = state.health.failures();
    if failures.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ok\n{}\n", failures.join("\n")),
        )
            .into_response()
    }
}

/// Readiness: 200 when every task runs, gRPC serves, discovery has a complete peer set and every
/// queue this node is primary of has as many replicas up as synchronous producers need; 503 with
/// one line per reason otherwise (also while starting and shutting down). Replicas that are down
/// without degrading a queue are listed in the 200 body.
async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let (ready, reasons) = readiness(&state);
    let body = format!(
        "{}\n{}",
        if ready { "ready" } else { "not ready" },
        reasons.iter().map(|r| format!("{r}\n")).collect::<String>()
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// What `/readyz` answers: ready or not, and its lines after the first.
pub(crate) fn readiness(state: &HttpState) -> (bool, Vec<String>) {
    let mut reasons = state.health.not_ready_reasons();
    let (degraded, report) = state.metrics.replication.health_report();
    let not_ready = degraded || !reasons.is_empty();
    reasons.extend(report.lines().map(ToOwned::to_owned));
    (!not_ready, reasons)
}
