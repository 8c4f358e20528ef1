//! Who may use the HTTP port: a bearer token for everything but the kubelet's probes.
//!
//! With `server.http_auth.token_file` set, a request must carry `Authorization: Bearer <token>`
//! unless its path is `/healthz` or `/readyz` (the kubelet probes without credentials), or
//! `/metrics` with `metrics_open: true`. Every other path, present or future (a console, a
//! status endpoint that names queues and cursors), needs the token: the layer allows by path,
//! so a new route is protected without anyone remembering to. A refusal is `401` with
//! `WWW-Authenticate: Bearer`, the same for a missing token, a wrong one and an unknown path,
//! so that nothing about the routes leaks to a caller without the token.
//!
//! The token is the file's content without surrounding whitespace (a Secret's trailing
//! newline); the file is re-read when its modification time or length changes, so a rotated
//! Secret takes effect without a restart. A file that cannot be read or is empty after a change
//! keeps the previous token, with a warning. The comparison takes the same time wherever the
//! first difference is.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::HttpAuthConfig;

/// Paths anyone may request: the kubelet's probes.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

type Stamp = (Option<SystemTime>, u64);

/// The token, re-read when its file changes.
#[derive(Debug)]
pub struct HttpAuth {
    file: PathBuf,
    metrics_open: bool,
    current: Mutex<(Stamp, Vec<u8>)>,
}

fn stamp(file: &std::path::Path) -> Stamp {
    std::fs::metadata(file).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

fn read_token(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(file)
        .map_err(|e| format!("reading the token file {}: {e}", file.display()))?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", file.display()));
    }
    Ok(token.to_vec())
}

/// `a == b` in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl HttpAuth {
    /// Reads the token once.
    ///
    /// # Errors
    ///
    /// A sentence naming the file if it cannot be read or holds no token.
    pub fn new(config: &HttpAuthConfig) -> Result<Self, String> {
        let stamped = stamp(&config.token_file);
        let token = read_token(&config.token_file)?;
        Ok(HttpAuth {
            file: config.token_file.clone(),
            metrics_open: config.metrics_open,
            current: Mutex::new((stamped, token)),
        })
    }

    /// Whether `path` needs no token.
    fn open(&self, path: &str) -> bool {
        OPEN_PATHS.contains(&path) || (self.metrics_open && path == "/metrics")
    }

    /// Whether the `Authorization` header value carries the current token.
    fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let now = stamp(&self.file);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != now {
            match read_token(&self.file) {
                Ok(token) => {
                    tracing::info!(file = %self.file.display(), "HTTP token file changed: reloaded");
                    *current = (now, token);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP token file changed but holds no token; keeping the previous one");
                    current.0 = now;
                }
            }
        }
        same(given.trim_ascii(), &current.1)
    }
}

async fn require_token(
    State(auth): State<Arc<HttpAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.open(request.uri().path()) {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(axum::http::HeaderValue::as_bytes);
    // `allows` may read the token file: a small blocking read, as `stat` is for TLS.
    if auth.allows(authorization) {
        return next.run(request).await;
    }
    tracing::debug!(path = %request.uri().path(), "HTTP request without a valid bearer token refused");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"repliqd\"")],
        "a bearer token is required (server.http_auth)\n",
    )
        .into_response()
}

/// `router` behind the token check, or unchanged without `server.http_auth`. Apply it to the
/// complete router (after every route is added), so that new routes are covered.
pub fn protect(router: Router, auth: Option<Arc<HttpAuth>>) -> Router {
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, require_token)),
        None => router,
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_bytes_and_lengths() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
