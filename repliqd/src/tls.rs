//! Mutual TLS on the gRPC port, from the daemon's own acceptor.
//!
//! tonic's own TLS configuration is fixed when the server is built; a certificate that is
//! rotated (a Kubernetes Secret swapped under its mount, cert-manager renewing) would need a
//! restart. Here each accepted connection takes the current [`rustls::ServerConfig`], which is
//! rebuilt whenever one of the three files changed (their modification times and lengths are
//! compared, one `stat` each per connection, as etcd re-reads its certificate for every new
//! connection). A change that does not load (a half-written file) keeps the previous
//! configuration and is logged once.
//!
//! The acceptor asks every client for a certificate chaining to the CA (`WebPkiClientVerifier`);
//! the replica service then checks that it is issued to the name in the stream's `Hello`
//! (`ReplicaService::authenticated`). Identities: the certificate's DNS subject alternative
//! name is the node name (docs/SECURITY.md).
//!
//! [`TlsMetrics`]: the expiry time of each file's certificates, set when the files load, and the
//! reloads that failed. [`watch`] re-checks the files periodically, so that a renewal shows in
//! the log and the metrics even while no new connection arrives.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

pub use crate::metrics::{TlsFileLabels, TlsMetrics};

/// The earliest expiry (Unix seconds) of the certificates in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expiry {
    cert: i64,
    ca: i64,
}

impl TlsMetrics {
    fn record(&self, files: &TlsConfig, expiry: Expiry) {
        for (file, path, at) in [
            ("cert", &files.cert, expiry.cert),
            ("ca", &files.ca, expiry.ca),
        ] {
            self.expiry
                .get_or_create(&vec![
                    ("file", file.to_owned()),
                    ("path", path.display().to_string()),
                ])
                .set(at);
        }
    }
}

/// The earliest `notAfter` of `certs`, in Unix seconds.
fn earliest_expiry(path: &Path, certs: &[CertificateDer<'_>]) -> Result<i64, String> {
    let mut earliest = i64::MAX;
    for der in certs {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("{}: unreadable certificate: {e}", path.display()))?;
        earliest = earliest.min(cert.validity().not_after.timestamp());
    }
    Ok(earliest)
}

/// How long a client may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files' identity for change detection: (modified, length) of each.
type Stamp = [(Option<SystemTime>, u64); 3];

/// The current server configuration, rebuilt when the files change.
#[derive(Debug)]
pub struct ReloadingConfig {
    files: TlsConfig,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
    metrics: TlsMetrics,
}

fn stamp(files: &TlsConfig) -> Stamp {
    [&files.ca, &files.cert, &files.key]
        .map(|p| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len())))
}

fn load(files: &TlsConfig) -> Result<(ServerConfig, Expiry), String> {
    let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certs)
    };
    let ca_certs = certs(&files.ca)?;
    let node_certs = certs(&files.cert)?;
    let expiry = Expiry {
        cert: earliest_expiry(&files.cert, &node_certs)?,
        ca: earliest_expiry(&files.ca, &ca_certs)?,
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in ca_certs {
        roots
            .add(ca)
            .map_err(|e| format!("CA in {}: {e}", files.ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| format!("CA in {}: {e}", files.ca.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(node_certs, key)
            .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, expiry))
}

impl ReloadingConfig {
    /// Loads the files once.
    ///
    /// # Errors
    ///
    /// A sentence naming the file that does not load.
    pub fn new(files: TlsConfig, metrics: TlsMetrics) -> Result<Self, String> {
        let stamped = stamp(&files);
        let (config, expiry) = load(&files)?;
        metrics.record(&files, expiry);
        Ok(ReloadingConfig {
            files,
            current: Mutex::new((stamped, Arc::new(config))),
            metrics,
        })
    }

    /// The configuration for a new connection: reloaded first if a file changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let now = stamp(&self.files);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != now {
            match load(&self.files) {
                Ok((config, expiry)) => {
                    tracing::info!(cert = %self.files.cert.display(), cert_expiry = expiry.cert, ca_expiry = expiry.ca, "TLS certificate files changed: reloaded");
                    self.metrics.record(&self.files, expiry);
                    *current = (now, Arc::new(config));
                }
                Err(e) => {
                    self.metrics.reload_failures.inc();
                    tracing::warn!(error = %e, "TLS certificate files changed but do not load; keeping the previous ones");
                    // Not again for the same files.
                    current.0 = now;
                }
            }
        }
        current.1.clone()
    }
}

/// Accepts TCP connections on `listener` and yields those that completed a mutual TLS
/// handshake, for `serve_with_incoming`. Handshakes run concurrently, each bounded.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a gRPC connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let out = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = out.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Re-checks the files every `period` (a `stat` of each), so that a renewed certificate is
/// logged and its expiry exported without waiting for a new connection. Runs until dropped.
pub async fn watch(config: Arc<ReloadingConfig>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let config = Arc::clone(&config);
        // `stat` and a possible reload are blocking file reads.
        let _ = tokio::task::spawn_blocking(move || config.current()).await;
    }
}
