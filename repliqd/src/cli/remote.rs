//! The flags the remote commands share: the node's address and the TLS files.

use std::path::PathBuf;

use repliq::client::{ClientTls, QueueDescription};

use super::CliError;

/// Where and how to reach a node.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// A node's gRPC address (`host:port`; `server.grpc_listen`, with `server.clients` on). Any
    /// node holding the queue: a replica redirects to the primary.
    #[arg(long, value_name = "ADDR")]
    pub remote: String,
    /// Speak TLS (to nodes with `server.tls`): the CA certificate(s) the nodes' certificates
    /// chain to (PEM).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM; with --key and --ca): its DNS name is the identity the
    /// node's `server.clients.rules` authorize.
    #[arg(long, value_name = "PEM", requires = "key", requires = "ca")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM; with --cert).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the nodes' certificates must carry, instead of the address's host (with --ca).
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,
}

impl RemoteArgs {
    /// The TLS configuration the flags ask for (`None` without `--ca`).
    pub fn tls(&self) -> Option<ClientTls> {
        let mut tls = ClientTls::new(self.ca.clone()?);
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity(cert, key);
        }
        if let Some(name) = &self.server_name {
            tls = tls.server_name(name);
        }
        Some(tls)
    }

    /// The queue's message type and schema, from the node.
    ///
    /// # Errors
    ///
    /// [`CliError::Client`]: the node refused (no such queue, no right to read it) or cannot
    /// be reached.
    pub async fn describe(&self, queue: &str) -> Result<QueueDescription, CliError> {
        Ok(match self.tls() {
            Some(tls) => repliq::client::describe_tls(&self.remote, queue, &tls).await?,
            None => repliq::client::describe(&self.remote, queue).await?,
        })
    }
}
