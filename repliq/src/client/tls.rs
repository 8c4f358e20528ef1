//! TLS to the nodes (feature `client-tls`): the CA the nodes' certificates chain to, this
//! client's certificate and key (its identity, which the node authorizes per queue), and the
//! name the node's certificate must be valid for.
//!
//! The files are read at every connection (a reconnect after a rotated Kubernetes Secret uses the
//! new ones without a restart), as the nodes read theirs.

use std::path::{Path, PathBuf};

use super::ClientError;

/// How a client speaks TLS to the nodes: set it with [`ProducerOptions::tls`] or
/// [`ConsumerOptions::tls`].
///
/// Which name a node's certificate must carry (a DNS subject alternative name): the
/// [`server_name`](ClientTls::server_name) if set, for every node; otherwise the host of the
/// address connected to (a seed's host, e.g. `repliq.repliq.svc`), and after a redirect the
/// primary's node name (node certificates carry it: docs/SECURITY.md).
///
/// [`ProducerOptions::tls`]: super::ProducerOptions::tls
/// [`ConsumerOptions::tls`]: super::ConsumerOptions::tls
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub(crate) ca: PathBuf,
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    pub(crate) server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the nodes whose certificates chain to the CA certificate(s) in the PEM file `ca`.
    /// No client certificate: a node with `server.tls` asks for one and refuses the handshake
    /// without it; add it with [`identity`](ClientTls::identity).
    #[must_use]
    pub fn new(ca: impl Into<PathBuf>) -> Self {
        ClientTls {
            ca: ca.into(),
            identity: None,
            server_name: None,
        }
    }

    /// This client's certificate chain and private key (PEM files). Its DNS subject alternative
    /// name is the identity the node's `server.clients.rules` authorize.
    #[must_use]
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// The name every node's certificate must be valid for, instead of the address's host (a
    /// name all node certificates carry, e.g. the Service's DNS name).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
        std::fs::read(path).map_err(|e| ClientError::Tls {
            reason: format!("reading {}: {e}", path.display()),
        })
    }

    /// tonic's configuration for a connection to a node that must be `name` (unless
    /// [`server_name`](ClientTls::server_name) overrides it).
    pub(crate) fn config(
        &self,
        name: &str,
    ) -> Result<tonic::transport::ClientTlsConfig, ClientError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(Self::read(&self.ca)?))
            .domain_name(self.server_name.as_deref().unwrap_or(name));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(Self::read(cert)?, Self::read(key)?));
        }
        Ok(config)
    }
}
