//! The built-in live console: a web page at `/ui` and its JSON at `/api/v1/status`, also read by
//! `repliq top`.
//!
//! The status document is built from the same state as `/metrics` (the text it serves, read back
//! by [`samples`]) and `/readyz`, plus each queue's replication state file (its primary's name and
//! where its epoch began). Once a second the daemon records the counters (for the rates) and the
//! queues' epochs (for the list of failovers) in a [`History`]. The page's assets are compiled into
//! the binary: no CDN, no build step, no framework.

mod history;
pub mod samples;
pub mod status;
pub mod terminal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use history::Key;
pub use history::{FAILOVERS_KEPT, History};
pub use samples::Samples;
pub use status::Status;

use crate::http::HttpState;

/// The path of the status document.
pub const STATUS_PATH: &str = "/api/v1/status";

/// How often the daemon records counters and epochs, and the page asks for the status.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

/// The console's own state: the node it describes and what it remembers.
#[derive(Debug)]
pub struct Console {
    node: String,
    root: PathBuf,
    history: History,
}

impl Console {
    /// The console of node `node` whose queues are under `root`.
    #[must_use]
    pub fn new(node: String, root: PathBuf) -> Self {
        Console {
            node,
            root,
            history: History::default(),
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The metrics' samples now (blocking: reads the queues' files).
fn current_samples(state: &HttpState) -> Result<Samples, String> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| format!("encoding the metrics: {e}"))?;
    Samples::parse(&text).map_err(|e| format!("reading the metrics back: {e}"))
}

/// The status document now (blocking: reads the queues' files).
///
/// # Errors
///
/// A message if the metrics cannot be encoded or read back (a bug).
pub(crate) fn status(state: &HttpState, console: &Console) -> Result<Status, String> {
    let samples = current_samples(state)?;
    let (ready, readiness) = crate::http::readiness(state);
    let replica_errors: BTreeMap<(String, String), String> = state
        .metrics
        .replication
        .health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flat_map(|(queue, h)| {
            h.down.iter().filter_map(move |(replica, error)| {
                Some(((queue.clone(), replica.clone()), error.clone()?))
            })
        })
        .collect();
    Ok(status::build(&status::Inputs {
        node: &console.node,
        root: &console.root,
        metrics: &samples,
        ready,
        readiness,
        replica_errors: &replica_errors,
        history: &console.history,
        now_unix_ms: now_unix_ms(),
    }))
}

/// One look: records the counters and the queues' epochs.
fn sample(state: &HttpState, console: &Console) {
    let Ok(samples) = current_samples(state) else {
        return;
    };
    let at = Instant::now();
    let mut counters = BTreeMap::new();
    let mut queues = Vec::new();
    for (labels, v) in samples.all("repliq_enqueued_records_total") {
        if let Some(queue) = labels.get("queue") {
            counters.insert(Key::enqueued(queue), v as u64);
            let dir = console.root.join(queue);
            if let Some((_, epoch, start, primary)) = status::queue_role(&dir, &console.node) {
                queues.push((queue.clone(), epoch, start, primary));
            }
        }
    }
    for (labels, v) in samples.all("repliq_dequeued_records_total") {
        if let (Some(queue), Some(cursor)) = (labels.get("queue"), labels.get("cursor")) {
            counters.insert(Key::dequeued(queue, cursor), v as u64);
        }
    }
    console.history.record(at, counters);
    console.history.observe(now_unix_ms(), queues);
}

/// Looks every [`SAMPLE_INTERVAL`] until dropped (the HTTP task runs it beside the server).
pub(crate) async fn sample_forever(state: Arc<HttpState>, console: Arc<Console>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (state, console) = (Arc::clone(&state), Arc::clone(&console));
        // Reading the queues' files is blocking I/O.
        let _ = tokio::task::spawn_blocking(move || sample(&state, &console)).await;
    }
}

/// The console's routes: `/ui` (also `/ui/`), its two assets, and the status document.
pub(crate) fn routes(console: Arc<Console>) -> Router<Arc<HttpState>> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/console.css", get(style))
        .route("/ui/console.js", get(script))
        .route(STATUS_PATH, get(status_json))
        .layer(axum::Extension(console))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    let mut response = asset("text/html; charset=utf-8", PAGE);
    // Everything the page loads comes from this daemon; nothing inline, nothing else.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn status_json(
    State(state): State<Arc<HttpState>>,
    axum::Extension(console): axum::Extension<Arc<Console>>,
) -> Response {
    let built = tokio::task::spawn_blocking(move || status(&state, &console)).await;
    match built {
        Ok(Ok(status)) => match serde_json::to_string(&status) {
            Ok(json) => (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                json,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the status: {e}\n"),
            )
                .into_response(),
        },
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the status: {e}\n"),
        )
            .into_response(),
    }
}
