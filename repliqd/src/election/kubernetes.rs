//! The Kubernetes backend: one `coordination.k8s.io/v1` Lease per queue, named
//! `{prefix}-{queue}`. `spec.holderIdentity` is the primary, `spec.leaseTransitions` the epoch,
//! `metadata.resourceVersion` the compare-and-swap token (create when absent, replace with the
//! resourceVersion read, `409 Conflict` when someone else wrote first).
//!
//! Candidates advertise in their own Leases, `{prefix}-{queue}-c-{node}`, labelled
//! `repliq.io/candidate-for: {prefix}-{queue}`, with the position in the annotation
//! `repliq.io/next-seq`; each advertisement changes their resourceVersion, which is how the
//! state machine tells a live candidate from a dead one.
//!
//! RBAC: `get`, `list`, `create`, `update` on `leases` in the namespace.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::backend::LeaseBackend;
use super::machine::{CandidateView, LeaseView, Observation, Position, WriteOutcome};

const CANDIDATE_LABEL: &str = "repliq.io/candidate-for";
const NEXT_SEQ: &str = "repliq.io/next-seq";
/// The epoch of the candidate's last record (absent, from an older repliqd: 0).
const LAST_EPOCH: &str = "repliq.io/last-epoch";
const NODE: &str = "repliq.io/node";

/// Leases in one namespace.
#[derive(Debug, Clone)]
pub struct KubeLeaseBackend {
    api: Api<Lease>,
    namespace: String,
    prefix: String,
    lease_seconds: i32,
}

/// `s` as a DNS label part: lowercase alphanumerics and `-`.
fn dns(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    mapped.trim_matches('-').to_owned()
}

fn label_value(s: &str) -> String {
    let mut v: String = s.chars().take(63).collect();
    while v.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        v.pop();
    }
    v
}

impl KubeLeaseBackend {
    /// Leases in `namespace` named after `prefix`, `lease_seconds` long (informational:
    /// expiry is judged by the observers' clocks).
    #[must_use]
    pub fn new(client: Client, namespace: &str, prefix: &str, lease_seconds: i32) -> Self {
        KubeLeaseBackend {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
            lease_seconds,
        }
    }

    /// The Lease of `queue`.
    #[must_use]
    pub fn lease_name(&self, queue: &str) -> String {
        format!("{}-{}", self.prefix, dns(queue))
    }

    /// The candidate Lease of `node` for `queue`.
    #[must_use]
    pub fn candidate_name(&self, queue: &str, node: &str) -> String {
        format!("{}-c-{}", self.lease_name(queue), dns(node))
    }

    fn explain(&self, what: &str, e: &kube::Error) -> String {
        match e {
            kube::Error::Api(s) if s.is_forbidden() => format!(
                "RBAC: the service account may not {what} leases.coordination.k8s.io in \
                 namespace `{}` (grant get, list, create, update on leases): {e}",
                self.namespace
            ),
            _ => format!("{what} leases in namespace `{}`: {e}", self.namespace),
        }
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[async_trait]
impl LeaseBackend for KubeLeaseBackend {
    fn describe(&self) -> String {
        format!("Kubernetes leases in namespace `{}`", self.namespace)
    }

    async fn observe(&self, queue: &str) -> Result<Observation, String> {
        let name = self.lease_name(queue);
        let lease = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.explain("get", &e))?;
        let lease = match lease {
            None => LeaseView::default(),
            Some(l) => {
                let spec = l.spec.unwrap_or_default();
                LeaseView {
                    holder: spec.holder_identity.filter(|h| !h.is_empty()),
                    epoch: spec
                        .lease_transitions
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(0),
                    token: l.metadata.resource_version.unwrap_or_default(),
                }
            }
        };
        let selector = format!("{CANDIDATE_LABEL}={}", label_value(&name));
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.explain("list", &e))?;
        let candidates = list
            .items
            .into_iter()
            .filter_map(|l| {
                let annotations = l.metadata.annotations?;
                Some(CandidateView {
                    node: annotations.get(NODE)?.clone(),
                    position: Position {
                        next_seq: annotations.get(NEXT_SEQ)?.parse().ok()?,
                        last_epoch: match annotations.get(LAST_EPOCH) {
                            Some(e) => e.parse().ok()?,
                            None => 0,
                        },
                    },
                    token: l.metadata.resource_version?,
                })
            })
            .collect();
        Ok(Observation { lease, candidates })
    }

    async fn write(&self, queue: &str, node: &str, epoch: u64, expected: &str) -> WriteOutcome {
        let name = self.lease_name(queue);
        let now = MicroTime(Timestamp::now());
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.to_owned()),
                lease_transitions: Some(i32::try_from(epoch).unwrap_or(i32::MAX)),
                lease_duration_seconds: Some(self.lease_seconds),
                renew_time: Some(now.clone()),
                ..LeaseSpec::default()
            }),
        };
        let result = if expected.is_empty() {
            if let Some(spec) = &mut lease.spec {
                spec.acquire_time = Some(now);
            }
            self.api.create(&PostParams::default(), &lease).await
        } else {
            lease.metadata.resource_version = Some(expected.to_owned());
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await
        };
        match result {
            Ok(l) => WriteOutcome::Written(l.metadata.resource_version.unwrap_or_default()),
            Err(e) if conflict(&e) => WriteOutcome::Conflict,
            Err(e) => {
                tracing::warn!(lease = %name, error = %self.explain("update", &e), "cannot write the lease");
                WriteOutcome::Failed
            }
        }
    }

    async fn advertise(&self, queue: &str, node: &str, position: Position) -> Result<(), String> {
        let name = self.candidate_name(queue, node);
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.explain("get", &e))?;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    CANDIDATE_LABEL.to_owned(),
                    label_value(&self.lease_name(queue)),
                )])),
                annotations: Some(BTreeMap::from([
                    (NODE.to_owned(), node.to_owned()),
                    (NEXT_SEQ.to_owned(), position.next_seq.to_string()),
                    (LAST_EPOCH.to_owned(), position.last_epoch.to_string()),
                ])),
                resource_version: current.and_then(|c| c.metadata.resource_version),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.to_owned()),
                lease_duration_seconds: Some(self.lease_seconds),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let result = if lease.metadata.resource_version.is_none() {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await
        };
        result.map(|_| ()).map_err(|e| self.explain("update", &e))
    }
}
