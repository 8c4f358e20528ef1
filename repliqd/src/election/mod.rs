//! Automatic failover: one lease per queue on a coordination backend decides the primary.
//!
//! [`machine`] is the I/O-free election state machine; the backends (`etcd`, `kubernetes`: cargo
//! features of the same names, on by default)
//! read and compare-and-swap the lease; the driver runs one election per local queue and carries
//! out its commands on the queue (fence, promote).

pub mod machine;

use std::time::Duration;

use serde::Deserialize;

use repliq::QueueError;

/// `election:` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ElectionConfig {
    /// Where the leases live.
    pub backend: BackendKind,
    /// etcd: the client endpoints (`http://host:port`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// etcd: the key prefix; kubernetes: the prefix of the Lease names.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// kubernetes: the namespace of the Leases (default: the discovery namespace, else
    /// `POD_NAMESPACE`, else the service account's).
    #[serde(default)]
    pub namespace: Option<String>,
    /// How long an unrenewed lease stays valid.
    #[serde(default = "default_lease_ms")]
    pub lease_duration_ms: u64,
    /// How long after its last successful renewal a primary fences itself.
    #[serde(default = "default_renew_ms")]
    pub renew_deadline_ms: u64,
    /// How often leases are observed and renewed.
    #[serde(default = "default_retry_ms")]
    pub retry_period_ms: u64,
}

/// `election.backend`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// etcd v3 (outside a cluster).
    Etcd,
    /// A `coordination.k8s.io/v1` Lease per queue.
    Kubernetes,
}

fn default_prefix() -> String {
    "repliq".into()
}
fn default_lease_ms() -> u64 {
    10_000
}
fn default_renew_ms() -> u64 {
    6_000
}
fn default_retry_ms() -> u64 {
    1_000
}

impl ElectionConfig {
    /// The timing of the state machine.
    #[must_use]
    pub fn timing(&self) -> machine::Timing {
        machine::Timing {
            lease_duration: Duration::from_millis(self.lease_duration_ms),
            renew_deadline: Duration::from_millis(self.renew_deadline_ms),
            retry_period: Duration::from_millis(self.retry_period_ms),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        let invalid = |key: &str, why: String| QueueError::InvalidConfig(format!("{key}: {why}"));
        if self.backend == BackendKind::Etcd && self.endpoints.is_empty() {
            return Err(invalid(
                "election.endpoints",
                "the etcd backend needs at least one endpoint (http://host:port)".into(),
            ));
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(
                "election.prefix",
                format!(
                    "`{}` must be non-empty lowercase letters, digits and `-`",
                    self.prefix
                ),
            ));
        }
        self.timing()
            .check()
            .map_err(|why| invalid("election.lease_duration_ms", why))
    }
}

pub mod backend;
pub mod driver;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;

/// The lease validity of every queue this node elects, by queue directory: the election extends
/// it at each renewal, the queue's replication task publishes acknowledgements only while it
/// holds ([`repliq::replication::Authority`]).
#[derive(Debug, Clone, Default)]
pub struct Authorities(
    std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<std::path::PathBuf, repliq::replication::Authority>,
        >,
    >,
);

impl Authorities {
    /// The authority of the queue in `dir` (held by nobody until its election grants it).
    #[must_use]
    pub fn of(&self, dir: &std::path::Path) -> repliq::replication::Authority {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(dir.to_path_buf())
            .or_default()
            .clone()
    }
}

/// The election task of a daemon: resolves with `Ok` at `stop`, with `Err` if it stopped while
/// the daemon ran.
pub type ElectionTask =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// The automatic failover task if the configuration has an `election:` section (run it in a
/// Tokio runtime); `None` when failover is manual.
///
/// # Errors
///
/// [`QueueError::InvalidConfig`] if the Kubernetes backend is selected outside a cluster, or a
/// backend this build left out (features `etcd`, `kubernetes`).
#[cfg_attr(
    not(any(feature = "etcd", feature = "kubernetes")),
    allow(unused_variables, unreachable_code)
)]
pub fn start(
    config: &crate::Config,
    node: &str,
    authorities: Authorities,
    stop: tokio::sync::watch::Receiver<bool>,
    metrics: crate::metrics::ElectionMetrics,
) -> Result<Option<ElectionTask>, QueueError> {
    let Some(e) = &config.election else {
        return Ok(None);
    };
    let timing = e.timing();
    let root = config.queue.persistence.path.clone();
    let node = node.to_owned();
    let task: ElectionTask = match e.backend {
        #[cfg(feature = "etcd")]
        BackendKind::Etcd => {
            let backend = etcd::EtcdBackend::new(
                e.endpoints.clone(),
                &e.prefix,
                timing.lease_duration,
                timing.retry_period,
            );
            Box::pin(driver::run(
                std::sync::Arc::new(backend),
                node,
                root,
                timing,
                authorities,
                stop,
                metrics,
            ))
        }
        #[cfg(feature = "kubernetes")]
        BackendKind::Kubernetes => {
            let client = crate::kube_client::in_cluster_client().map_err(|err| {
                QueueError::InvalidConfig(format!(
                    "election.backend: {}",
                    err.to_string()
                        .replace("replication.discovery.method: ", "")
                ))
            })?;
            let namespace = match (&e.namespace, &config.replication.discovery.namespace) {
                (Some(ns), _) | (None, Some(ns)) => ns.clone(),
                (None, None) => crate::kube_client::namespace_from_env()?,
            };
            let seconds = i32::try_from(timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
            let backend = kubernetes::KubeLeaseBackend::new(client, &namespace, &e.prefix, seconds);
            Box::pin(driver::run(
                std::sync::Arc::new(backend),
                node,
                root,
                timing,
                authorities,
                stop,
                metrics,
            ))
        }
        #[cfg(not(feature = "etcd"))]
        BackendKind::Etcd => return Err(missing_feature("etcd")),
        #[cfg(not(feature = "kubernetes"))]
        BackendKind::Kubernetes => return Err(missing_feature("kubernetes")),
    };
    Ok(Some(task))
}

/// The error for a backend this build left out.
#[cfg(not(all(feature = "etcd", feature = "kubernetes")))]
fn missing_feature(backend: &str) -> QueueError {
    QueueError::InvalidConfig(format!(
        "election.backend: `{backend}` needs a repliqd built with the `{backend}` feature (on by \
         default; this one was built without it)"
    ))
}
