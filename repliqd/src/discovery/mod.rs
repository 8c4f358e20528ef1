//! Peer discovery: where the other nodes of the cluster are, as a stream of snapshots.
//!
//! [`Discovery::subscribe`] hands out a [`tokio::sync::watch::Receiver`] of [`PeerSet`]s: static
//! discovery publishes the configured peers once; Kubernetes discovery ([`kubernetes`]) publishes
//! a new snapshot whenever a matching pod becomes Ready, stops being Ready or goes away. A node
//! never lists itself.

#[cfg(feature = "kubernetes")]
pub mod kubernetes;

use repliq::QueueError;
use tokio::sync::watch;

use crate::config::{Config, DiscoveryMethod, Peer};

/// One snapshot of the other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// The other nodes, sorted by name.
    pub peers: Vec<Peer>,
    /// `false` until discovery has a complete view (before the first successful list, while
    /// the list is refused, or when the selector matches no pod at all).
    pub ready: bool,
    /// What is wrong, when something is (named in `/readyz`-style logs).
    pub problem: Option<String>,
}

impl PeerSet {
    /// A complete snapshot of `peers`.
    #[must_use]
    pub fn of(mut peers: Vec<Peer>) -> Self {
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        PeerSet {
            peers,
            ready: true,
            problem: None,
        }
    }
}

/// A running discovery; dropping it stops the Kubernetes watcher.
#[derive(Debug)]
pub struct Discovery {
    tx: watch::Sender<PeerSet>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Discovery {
    /// A discovery that always answers `set`.
    #[must_use]
    pub fn constant(set: PeerSet) -> Self {
        Discovery {
            tx: watch::Sender::new(set),
            task: None,
        }
    }

    /// A discovery fed by a task (see `kubernetes::spawn`).
    #[must_use]
    pub fn from_task(tx: watch::Sender<PeerSet>, task: tokio::task::JoinHandle<()>) -> Self {
        Discovery {
            tx,
            task: Some(task),
        }
    }

    /// The current and future snapshots.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<PeerSet> {
        self.tx.subscribe()
    }

    /// The task feeding this discovery, if any, for a supervisor to watch (dropping the
    /// discovery no longer stops it then: whoever takes it aborts it).
    pub fn take_task(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.take()
    }

    /// The current snapshot.
    #[must_use]
    pub fn current(&self) -> PeerSet {
        self.tx.borrow().clone()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Checks what the configuration cannot check alone: this node's name, against the static peer
/// list (`peers` must not name it, `members` must).
///
/// # Errors
///
/// [`QueueError::InvalidConfig`] naming the problem.
pub fn preflight(config: &Config, node: &str) -> Result<(), QueueError> {
    if node.trim().is_empty() {
        return Err(QueueError::InvalidConfig(
            "the node name is empty: pass --node-name or set NODE_NAME (in Kubernetes, from the \
             downward API: spec.nodeName)"
                .into(),
        ));
    }
    let d = &config.replication.discovery;
    if d.method != DiscoveryMethod::Static {
        return Ok(());
    }
    if let Some(members) = &d.members {
        let Some(i) = members.iter().position(|p| p.name == node) else {
            let names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
            return Err(QueueError::InvalidConfig(format!(
                "replication.discovery.members: this node `{node}` (--node-name / NODE_NAME) is \
                 not listed (members: [{}]); `members` names every node, this one included",
                names.join(", ")
            )));
        };
        tracing::info!(
            node,
            entry = i,
            "replication.discovery.members: skipping this node's own entry"
        );
    } else if let Some(i) = d.peers.iter().position(|p| p.name == node) {
        return Err(QueueError::InvalidConfig(format!(
            "replication.discovery.peers[{i}].name: `{node}` is this node's own name \
             (--node-name / NODE_NAME); list only the other nodes, or use `members` for a list \
             of every node"
        )));
    }
    Ok(())
}

/// Starts the discovery the configuration selects (in a Tokio runtime).
///
/// # Errors
///
/// [`QueueError::InvalidConfig`] if Kubernetes discovery is selected outside a cluster (no
/// `KUBERNETES_SERVICE_HOST`, no service-account token) or without a namespace.
pub fn start(config: &Config, node: &str) -> Result<Discovery, QueueError> {
    preflight(config, node)?;
    let d = &config.replication.discovery;
    match d.method {
        DiscoveryMethod::Static => Ok(Discovery::constant(PeerSet::of(config.static_peers(node)))),
        #[cfg(feature = "kubernetes")]
        DiscoveryMethod::Kubernetes => {
            let settings = kubernetes::Settings::from_config(config, node)?;
            let client = crate::kube_client::in_cluster_client()?;
            Ok(kubernetes::spawn(client, settings))
        }
        #[cfg(not(feature = "kubernetes"))]
        DiscoveryMethod::Kubernetes => Err(QueueError::InvalidConfig(
            "replication.discovery.method: `kubernetes` needs a repliqd built with the \
             `kubernetes` feature (on by default; this one was built without it)"
                .into(),
        )),
    }
}
