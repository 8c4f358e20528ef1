//! The HTTP client the HTTP connectors (Slack, InfluxDB) share: HTTP/1.1 over TCP or TLS
//! (rustls with the system's root certificates), one pooled client per connector, every request
//! bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::ConnectError;

/// A response: status, the `Retry-After` seconds if any, and the body as text (truncated).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// # Errors
    ///
    /// Only if rustls refuses its own default protocol versions (it does not with ring).
    pub(crate) fn new(timeout: Duration) -> Result<HttpClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        // No system certificates (a bare container): plain http:// still works, https:// fails
        // each request with a certificate error (a transient failure, logged).
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates: https URLs will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpClient { client, timeout })
    }

    /// POSTs `body` to `uri`. `Err` is a failure to get any response (connect, TLS, timeout):
    /// transient by nature.
    pub(crate) async fn post(
        &self,
        uri: &hyper::Uri,
        content_type: &'static str,
        headers: &[(&'static str, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<Response, String> {
        let mut req = Request::post(uri.clone()).header(CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, v.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("POST {uri}: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the response of {uri}: {e}"))?
                .to_bytes();
            let mut body = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            body.truncate(body.trim_end().len());
            Ok(Response {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "POST {uri}: no response within {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}

/// Parses a URL setting: `http://` or `https://` with a host.
pub(crate) fn parse_url(connector: &str, key: &str, url: &str) -> Result<hyper::Uri, ConnectError> {
    let bad = |reason: String| ConnectError::Config {
        connector: connector.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(bad(format!("{url:?} is not an http:// or https:// URL")));
    }
    Ok(uri)
}
