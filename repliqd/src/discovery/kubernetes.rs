//! Kubernetes discovery: watches the pods that match `replication.discovery.label_selector` in
//! this pod's namespace (kube-rs `watcher`: list, then watch; a dropped watch resumes from the
//! last resource version; `410 Gone` re-lists).
//!
//! A pod is a peer while it is Ready, has a pod IP and is not being deleted. Its address is
//! `podIP:port` (`replication.discovery.port`, default 31337). Its name is, with
//! `peer_name: node` (the default), the Kubernetes node it runs on (`spec.nodeName`) — what the
//! seed's manifests give each daemon as `NODE_NAME` through the downward API — or with
//! `peer_name: pod`, the pod's name (set `NODE_NAME` from `metadata.name` then). The pod whose
//! name is this node's is left out.
//!
//! Under mutual TLS a peer's certificate is issued to its peer name, or with `tls_identity: pod`
//! to its pod's name: per-pod certificates in a DaemonSet, whose peer names are node names.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client};
use repliq::QueueError;
use tokio::sync::watch;

use super::{Discovery, PeerSet};
use crate::config::{Config, DEFAULT_GRPC_PORT, Peer, PeerName, TlsIdentity};
use crate::kube_client::namespace_from_env;

/// What the pod watcher needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace whose pods are watched.
    pub namespace: String,
    /// The label selector.
    pub label_selector: String,
    /// The gRPC port of the peers.
    pub port: u16,
    /// How a pod's peer name is chosen.
    pub peer_name: PeerName,
    /// Which name a peer pod's certificate carries.
    pub tls_identity: TlsIdentity,
    /// This node's name (its own pod is not a peer).
    pub node: String,
    /// First delay after an error (doubles up to `max_backoff`).
    pub backoff: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
}

impl Settings {
    /// Settings from the configuration; the namespace comes from
    /// `replication.discovery.namespace`, else `POD_NAMESPACE`, else the service account's
    /// namespace file.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] if there is no label selector or no namespace.
    pub fn from_config(config: &Config, node: &str) -> Result<Settings, QueueError> {
        let d = &config.replication.discovery;
        let label_selector = d.label_selector.clone().ok_or_else(|| {
            QueueError::InvalidConfig(
                "replication.discovery.label_selector: required by `method: kubernetes`".into(),
            )
        })?;
        let namespace = match &d.namespace {
            Some(ns) => ns.clone(),
            None => namespace_from_env()?,
        };
        Ok(Settings {
            namespace,
            label_selector,
            port: d.port.unwrap_or(DEFAULT_GRPC_PORT),
            peer_name: d.peer_name,
            tls_identity: d.tls_identity,
            node: node.to_owned(),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        })
    }
}

/// The peer a pod stands for, if it is one (Ready, with an IP, not being deleted).
#[must_use]
pub fn peer_of(pod: &Pod, settings: &Settings) -> Option<Peer> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    if !ready {
        return None;
    }
    let name = match settings.peer_name {
        PeerName::Node => pod.spec.as_ref()?.node_name.clone()?,
        PeerName::Pod => pod.metadata.name.clone()?,
    };
    if name == settings.node {
        return None;
    }
    let address = if ip.contains(':') {
        format!("[{ip}]:{}", settings.port)
    } else {
        format!("{ip}:{}", settings.port)
    };
    // The pod's name as its identity only where it differs from the peer name.
    let identity = match settings.tls_identity {
        TlsIdentity::Pod => pod.metadata.name.clone().filter(|pod| *pod != name),
        TlsIdentity::Peer => None,
    };
    Some(Peer {
        name,
        address,
        identity,
    })
}

/// Starts watching; the returned discovery publishes a snapshot at every change.
#[must_use]
pub fn spawn(client: Client, settings: Settings) -> Discovery {
    let (tx, _) = watch::channel(PeerSet::default());
    let task = tokio::spawn(run(client, settings, tx.clone()));
    Discovery::from_task(tx, task)
}

struct Pods {
    /// Pod name → the peer it stands for (`None`: matched but not a peer).
    pods: BTreeMap<String, Option<Peer>>,
    listed: bool,
}

impl Pods {
    fn snapshot(&self, settings: &Settings, problem: Option<String>) -> PeerSet {
        let mut by_name: BTreeMap<&str, &Peer> = BTreeMap::new();
        for (pod, peer) in &self.pods {
            let Some(peer) = peer else { continue };
            if let Some(other) = by_name.insert(&peer.name, peer)
                && other != peer
            {
                tracing::warn!(pod = %pod, peer = %peer.name, "two Ready pods have the same peer name; using one");
            }
        }
        let mut set = PeerSet::of(by_name.into_values().cloned().collect());
        let mut problem = problem;
        if self.listed && self.pods.is_empty() && problem.is_none() {
            problem = Some(format!(
                "replication.discovery.label_selector `{}` matches no pod in namespace `{}`, \
                 not even this one",
                settings.label_selector, settings.namespace
            ));
        }
        // A failed watch after a good list leaves a view that may be stale (the problem says
        // so) but is still the best there is; only a failed list leaves none.
        set.ready = self.listed && !self.pods.is_empty();
        set.problem = problem;
        set
    }
}

fn describe(e: &watcher::Error, settings: &Settings) -> String {
    let forbidden = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.is_forbidden(),
        watcher::Error::WatchError(s) => s.is_forbidden(),
        _ => false,
    };
    if forbidden {
        format!(
            "RBAC: the service account may not list/watch pods in namespace `{}` (grant `get`, \
             `list`, `watch` on `pods` with a Role and RoleBinding): {e}",
            settings.namespace
        )
    } else {
        format!(
            "watching pods `{}` in namespace `{}`: {e}",
            settings.label_selector, settings.namespace
        )
    }
}

async fn run(client: Client, settings: Settings, tx: watch::Sender<PeerSet>) {
    let api: Api<Pod> = Api::namespaced(client, &settings.namespace);
    let config = watcher::Config::default().labels(&settings.label_selector);
    let mut events = watcher(api, config).boxed();
    let mut state = Pods {
        pods: BTreeMap::new(),
        listed: false,
    };
    let mut init: Option<BTreeMap<String, Option<Peer>>> = None;
    let mut backoff = settings.backoff;
    let publish = |set: PeerSet| {
        tx.send_if_modified(|old| {
            if *old == set {
                return false;
            }
            if set.peers != old.peers {
                let names: Vec<&str> = set.peers.iter().map(|p| p.name.as_str()).collect();
                tracing::info!(peers = ?names, "peer set changed");
            }
            if let Some(p) = &set.problem
                && old.problem.as_ref() != Some(p)
            {
                tracing::warn!(problem = %p, "discovery is not ready");
            }
            *old = set;
            true
        });
    };
    while let Some(event) = events.next().await {
        let pod_name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        match event {
            Ok(watcher::Event::Init) => init = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(buf) = &mut init {
                    buf.insert(pod_name(&pod), peer_of(&pod, &settings));
                }
            }
            Ok(watcher::Event::InitDone) => {
                state.pods = init.take().unwrap_or_default();
                state.listed = true;
                backoff = settings.backoff;
                publish(state.snapshot(&settings, None));
            }
            Ok(watcher::Event::Apply(pod)) => {
                state.pods.insert(pod_name(&pod), peer_of(&pod, &settings));
                backoff = settings.backoff;
                publish(state.snapshot(&settings, None));
            }
            Ok(watcher::Event::Delete(pod)) => {
                state.pods.remove(&pod_name(&pod));
                publish(state.snapshot(&settings, None));
            }
            Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                // The watch fell behind the API server's history: the watcher re-lists.
                tracing::debug!("pod watch expired (410 Gone); re-listing");
            }
            Err(e) => {
                let problem = describe(&e, &settings);
                // A failed (re-)list leaves no complete view; a failed watch keeps the last
                // list, which the next watch or list corrects.
                if matches!(e, watcher::Error::InitialListFailed(_)) {
                    state.listed = false;
                }
                publish(state.snapshot(&settings, Some(problem)));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
    }
}
