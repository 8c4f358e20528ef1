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
//! The HTTP port can serve HTTPS from the same machinery ([`ReloadingConfig::https`],
//! [`TlsListener`]): a server certificate only, no client certificate asked for (clients there
//! are the kubelet, Prometheus and people; `server.http_auth`'s token authenticates them).
//!
//! [`TlsMetrics`]: the expiry time of each file's certificates, set when the files load, and the
//! reloads that failed. [`watch`] re-checks the files periodically, so that a renewal shows in
//! the log and the metrics even while no new connection arrives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::{HttpTlsConfig, TlsConfig};

pub use crate::metrics::{TlsFileLabels, TlsMetrics};

/// The earliest expiry (Unix seconds) of the certificates of each file: (the file's role, its
/// path, the expiry).
type Expiry = Vec<(&'static str, PathBuf, i64)>;

impl TlsMetrics {
    fn record(&self, expiry: &Expiry) {
        for (file, path, at) in expiry {
            self.expiry
                .get_or_create(&vec![
                    ("file", (*file).to_owned()),
                    ("path", path.display().to_string()),
                ])
                .set(*at);
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
type Stamp = Vec<(Option<SystemTime>, u64)>;

/// Which files a configuration is built from, and for which port.
#[derive(Debug, Clone)]
enum Files {
    /// Mutual TLS between nodes (the gRPC port).
    Peers(TlsConfig),
    /// HTTPS on the HTTP port.
    Https(HttpTlsConfig),
}

impl Files {
    fn paths(&self) -> Vec<&Path> {
        match self {
            Files::Peers(f) => vec![&f.ca, &f.cert, &f.key],
            Files::Https(f) => vec![&f.cert, &f.key],
        }
    }

    fn cert(&self) -> &Path {
        match self {
            Files::Peers(f) => &f.cert,
            Files::Https(f) => &f.cert,
        }
    }
}

/// The current server configuration, rebuilt when the files change.
#[derive(Debug)]
pub struct ReloadingConfig {
    files: Files,
    current: Mutex<(Stamp, Arc<ServerConfig>)>,
    metrics: TlsMetrics,
}

fn stamp(files: &Files) -> Stamp {
    files
        .paths()
        .into_iter()
        .map(|p| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len())))
        .collect()
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn load(files: &Files) -> Result<(ServerConfig, Expiry), String> {
    match files {
        Files::Peers(files) => load_peers(files),
        Files::Https(files) => load_https(files),
    }
}

/// HTTPS: the server's certificate and key; no client certificate asked for.
fn load_https(files: &HttpTlsConfig) -> Result<(ServerConfig, Expiry), String> {
    let server_certs = certs(&files.cert)?;
    let expiry = vec![(
        "http_cert",
        files.cert.clone(),
        earliest_expiry(&files.cert, &server_certs)?,
    )];
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(server_certs, key)
            .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, expiry))
}

/// Mutual TLS between nodes: the node's certificate and key, clients verified against the CA.
fn load_peers(files: &TlsConfig) -> Result<(ServerConfig, Expiry), String> {
    let ca_certs = certs(&files.ca)?;
    let node_certs = certs(&files.cert)?;
    let expiry = vec![
        (
            "cert",
            files.cert.clone(),
            earliest_expiry(&files.cert, &node_certs)?,
        ),
        (
            "ca",
            files.ca.clone(),
            earliest_expiry(&files.ca, &ca_certs)?,
        ),
    ];
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
        Self::load_first(Files::Peers(files), metrics)
    }

    /// Loads the HTTPS files once (`server.http_tls`).
    ///
    /// # Errors
    ///
    /// A sentence naming the file that does not load.
    pub fn https(files: HttpTlsConfig, metrics: TlsMetrics) -> Result<Self, String> {
        Self::load_first(Files::Https(files), metrics)
    }

    fn load_first(files: Files, metrics: TlsMetrics) -> Result<Self, String> {
        let stamped = stamp(&files);
        let (config, expiry) = load(&files)?;
        metrics.record(&expiry);
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
                    tracing::info!(cert = %self.files.cert().display(), expiry = ?expiry, "TLS certificate files changed: reloaded");
                    self.metrics.record(&expiry);
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
) -> impl tokio_stream::Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(accept_loop(listener, config, "gRPC"))
        .map(|(stream, _)| Ok(stream))
}

/// The HTTP port's listener with HTTPS, for `axum::serve`: the connections that completed a
/// TLS handshake, with their peers' addresses.
#[derive(Debug)]
pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `listener` with the configuration current at each connection.
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read.
    pub fn new(listener: TcpListener, config: Arc<ReloadingConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(TlsListener {
            accepted: accept_loop(listener, config, "HTTPS"),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections on `listener` and hands on those that completed a TLS handshake
/// (each bounded, run concurrently) until the receiver is dropped. `port` names the port in
/// the log.
fn accept_loop(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
    port: &'static str,
) -> tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, port, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let out = tx.clone();
            let failures = config.metrics.handshake_failures.clone();
            let failed = move |outcome: &'static str| {
                failures
                    .get_or_create(&vec![
                        ("port", port.to_owned()),
                        ("outcome", outcome.to_owned()),
                    ])
                    .inc();
            };
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = out.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => {
                        failed("refused");
                        tracing::warn!(%peer, error = %e, port, "TLS handshake refused");
                    }
                    Err(_) => {
                        failed("timeout");
                        tracing::warn!(%peer, port, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
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
