//! Certificates for the replication rows over mutual TLS: a CA made at run time (`rcgen`), one
//! certificate for the primary (`bench`, the name in its `Hello`) and one for the replica
//! processes (every replica name the rows use: `r`, `r0`, `r1`, …), as PEM files in a temporary
//! directory that the child processes read.
//!
//! The replica side is tonic's own TLS acceptor asking for a client certificate chaining to the
//! CA, with [`repliq::replication::ReplicaService::authenticated`]: the same checks as `repliqd`
//! with `server.tls` (rustls with ring, TLS 1.3, ALPN h2; the daemon's acceptor differs only in
//! reloading its files). The primary side is [`repliq::replication::PrimaryOptions::tls`], as in
//! the daemon.

use std::path::{Path, PathBuf};

use crate::BoxResult;

/// The node name the primary claims (and its certificate names).
pub const PRIMARY: &str = "bench";

/// Replica names a certificate covers: `r` (one replica) and `r0`..`r7`.
fn replica_names() -> Vec<String> {
    let mut names = vec!["r".to_owned()];
    names.extend((0..8).map(|i| format!("r{i}")));
    names
}

/// A directory of PEM files: `ca.crt`, `primary.crt`/`.key`, `replica.crt`/`.key`.
#[derive(Debug)]
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Makes a CA and the two certificates (ECDSA P-256, as `rcgen` generates by default).
    pub fn generate() -> BoxResult<Pki> {
        let dir = tempfile::tempdir()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "repliq-bench CA");
        let ca_key = rcgen::KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem())?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        for (file, names) in [
            ("primary", vec![PRIMARY.to_owned()]),
            ("replica", replica_names()),
        ] {
            let params = rcgen::CertificateParams::new(names)?;
            let key = rcgen::KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            std::fs::write(dir.path().join(format!("{file}.crt")), cert.pem())?;
            std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem())?;
        }
        Ok(Pki { dir })
    }

    /// The directory, as the replica child takes it (`ChildCfg::tls`).
    pub fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The primary's files, for [`repliq::replication::PrimaryOptions::tls`].
    pub fn primary(dir: &str) -> repliq::replication::TlsFiles {
        let d = Path::new(dir);
        repliq::replication::TlsFiles::new(
            d.join("ca.crt"),
            d.join("primary.crt"),
            d.join("primary.key"),
        )
    }
}

/// tonic's server TLS for a replica process whose certificate files are in `dir`: its
/// certificate, and a client certificate chaining to the CA required.
pub fn replica_server_config(dir: &str) -> BoxResult<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let d = PathBuf::from(dir);
    let read = |f: &str| std::fs::read(d.join(f));
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read("replica.crt")?,
            read("replica.key")?,
        ))
        .client_ca_root(Certificate::from_pem(read("ca.crt")?)))
}
