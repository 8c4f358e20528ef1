//! Mutual TLS between nodes (feature `tls`).
//!
//! A node's identity is the DNS name in its certificate's subject alternative names: it must
//! equal the node's name (`NODE_NAME`; Kubernetes node and pod names are DNS labels). Both ends
//! check it: the primary connects to replica `b` with `b` as the expected server name (rustls'
//! host name check), and the replica accepts a stream only from a client whose certificate is
//! valid for the name in its `Hello`, which must also be in its peer set
//! ([`ReplicaService`](super::ReplicaService)). Certificates chain to one CA.
//!
//! The files are read on every connection attempt (client side) and whenever they change
//! (the daemon's acceptor), so a rotated certificate (a Kubernetes Secret swapped under a
//! mount) is used by the next connection without a restart.

use std::path::PathBuf;

use rustls_pki_types::{CertificateDer, ServerName};

/// Where a node's certificate, key and CA are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The CA certificate(s) every peer's certificate must chain to.
    pub ca: PathBuf,
    /// This node's certificate chain; its DNS subject alternative name is the node name.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The CA, certificate and key at these paths.
    #[must_use]
    pub fn new(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }
    }

    fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    /// The client configuration for a stream to the node named `server`: this node's identity,
    /// the CA, and `server` as the name the replica's certificate must be valid for.
    ///
    /// # Errors
    ///
    /// A sentence naming the file that cannot be read.
    pub(crate) fn client_config(
        &self,
        server: &str,
    ) -> Result<tonic::transport::ClientTlsConfig, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(Self::read(&self.ca)?))
            .identity(Identity::from_pem(
                Self::read(&self.cert)?,
                Self::read(&self.key)?,
            ))
            .domain_name(server))
    }
}

/// Checks that the peer's certificate (`certs[0]`, already verified against the CA by the TLS
/// handshake) is valid for the node name `name`.
///
/// # Errors
///
/// A sentence saying why not.
pub(crate) fn check_peer_identity(certs: &[CertificateDer<'_>], name: &str) -> Result<(), String> {
    let Some(leaf) = certs.first() else {
        return Err("the peer presented no certificate".into());
    };
    let server_name = ServerName::try_from(name)
        .map_err(|_| format!("{name:?} is not a DNS name, so no certificate can name it"))?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("unreadable peer certificate: {e}"))?;
    cert.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| format!("the peer's certificate is not issued to {name:?}"))
}
