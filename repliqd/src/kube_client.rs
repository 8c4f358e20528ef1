//! The Kubernetes API client of the pod's service account, shared by discovery (the pod
//! watcher) and the `Lease` election: below both, so neither imports the other.

use kube::Client;
use repliq::QueueError;

/// The service account's directory in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub(crate) fn namespace_from_env() -> Result<String, QueueError> {
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.trim().is_empty()
    {
        return Ok(ns.trim().to_owned());
    }
    let file = format!("{SERVICE_ACCOUNT_DIR}/namespace");
    match std::fs::read_to_string(&file) {
        Ok(ns) if !ns.trim().is_empty() => Ok(ns.trim().to_owned()),
        _ => Err(QueueError::InvalidConfig(format!(
            "replication.discovery.namespace: not set, POD_NAMESPACE is not set and {file} \
             cannot be read; set one (downward API: metadata.namespace)"
        ))),
    }
}

/// The API client of the pod's service account.
///
/// # Errors
///
/// [`QueueError::InvalidConfig`] naming what is missing when not running in a pod
/// (`KUBERNETES_SERVICE_HOST`, the token or CA file).
pub fn in_cluster_client() -> Result<Client, QueueError> {
    let outside = |what: String| {
        QueueError::InvalidConfig(format!(
            "replication.discovery.method: `kubernetes` needs to run in a Kubernetes pod, but \
             {what}; use `method: static` with `replication.discovery.peers` (or `members`) outside a cluster"
        ))
    };
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        return Err(outside("KUBERNETES_SERVICE_HOST is not set".into()));
    }
    let token = format!("{SERVICE_ACCOUNT_DIR}/token");
    if !std::path::Path::new(&token).exists() {
        return Err(outside(format!(
            "there is no service-account token at {token} (automountServiceAccountToken: false?)"
        )));
    }
    let config = kube::Config::incluster().map_err(|e| {
        outside(format!(
            "the in-cluster configuration cannot be loaded ({e})"
        ))
    })?;
    Client::try_from(config)
        .map_err(|e| QueueError::Other(format!("creating the Kubernetes client: {e}")))
}
