//! `repliqd`, the repliq node daemon, as a library (the `repliqd` binary is a thin main over it): [`run`] serves gRPC (replication) and HTTP
//! (`/metrics`, `/healthz`, `/readyz`) until its shutdown future completes, then drains.

pub mod config;
#[cfg(feature = "connectors")]
mod connectors;
pub mod discovery;
pub mod election;
mod http;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::Config;
use tokio::net::TcpListener;

use repliq::QueueError;
use repliq::replication::{
    NodePolicy, PeerSet, PrimaryOptions, ReplicaAddr, ReplicaService, ReplicationState, Role,
    run_primary,
};

/// The addresses a running daemon listens on (useful with port 0 in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// gRPC.
    pub grpc: SocketAddr,
    /// HTTP endpoints.
    pub http: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, QueueError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| QueueError::io(format!("binding the {what} listener to {addr}"), e))
}

/// Runs the daemon until `shutdown` completes. `on_bound` is called once both listeners are
/// bound, with their addresses.
///
/// # Errors
///
/// [`QueueError::Io`] if a listener cannot be bound or the persistence path cannot be created.
pub async fn run(
    config: Config,
    node_name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound),
) -> Result<(), QueueError> {
    let discovery = discovery::start(&config, &node_name)?;
    let root = config.queue.persistence.path.clone();
    std::fs::create_dir_all(&root)
        .map_err(|e| QueueError::io(format!("creating {}", root.display()), e))?;
    write_node_policy(&config, &node_name)?;
    let grpc_listener = bind(config.server.grpc_listen, "gRPC").await?;
    let http_listener = bind(config.server.http_listen, "HTTP").await?;
    let bound = Bound {
        grpc: grpc_listener
            .local_addr()
            .map_err(|e| QueueError::io("reading the gRPC address", e))?,
        http: http_listener
            .local_addr()
            .map_err(|e| QueueError::io("reading the HTTP address", e))?,
    };
    tracing::info!(node = %node_name, grpc = %bound.grpc, http = %bound.http, root = %root.display(), "repliqd listening");

    let state = Arc::new(http::HttpState {
        metrics: metrics::Metrics::new(root.clone()),
        ready: false.into(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(
        axum::serve(http_listener, http::router(Arc::clone(&state)))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .into_future(),
    );

    let incoming =
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                ReplicaService::with_peers(root.clone(), accepted_peers(&discovery, &node_name))
                    .into_server(),
            )
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            }),
    );

    let election = election::spawn(&config, &node_name, stop_rx.clone())?;
    let primaries = tokio::spawn(run_primaries(
        config.clone(),
        node_name.clone(),
        discovery.subscribe(),
        state.metrics.replication.clone(),
        stop_rx.clone(),
    ));

    #[cfg(feature = "connectors")]
    let connectors = connectors::start(&config.connectors, &root, stop_rx.clone());

    let ready = Arc::clone(&state);
    let readiness = discovery::mirror_readiness(discovery.subscribe(), move |r| {
        ready.ready.store(r, Ordering::Release);
    });
    on_bound(bound);
    shutdown.await;
    tracing::info!("shutting down: draining replication");
    let stopping = std::time::Instant::now();
    readiness.abort();
    state.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    #[cfg(feature = "connectors")]
    connectors.join().await;
    let _ = primaries.await;
    if let Some(e) = election {
        let _ = e.await;
    }
    drop(discovery);
    // tonic's graceful shutdown waits for open streams, and a primary keeps its replication
    // stream to this node open for as long as it lives: give them the grace period, then stop.
    let grace = std::time::Duration::from_millis(config.server.shutdown_grace_ms)
        .saturating_sub(stopping.elapsed())
        .max(std::time::Duration::from_millis(100));
    let grpc_abort = grpc_task.abort_handle();
    match tokio::time::timeout(grace, grpc_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(QueueError::Other(format!("serving gRPC: {e}"))),
        Ok(Err(e)) => return Err(QueueError::Other(format!("the gRPC task failed: {e}"))),
        Err(_) => {
            tracing::info!(
                grace_ms = config.server.shutdown_grace_ms,
                "closing the replication streams still open after the grace period"
            );
            grpc_abort.abort();
        }
    }
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(QueueError::io("serving HTTP", e)),
        Err(e) => return Err(QueueError::Other(format!("the HTTP task failed: {e}"))),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Writes the node policy into the persistence root, so that a queue a producer creates there
/// waits for the replicas' acknowledgements from its first message, before this daemon has
/// found it. The file stays when the daemon stops: a queue created while it is down still waits
/// (and times out) rather than silently going unreplicated.
fn write_node_policy(config: &Config, node: &str) -> Result<(), QueueError> {
    let policy = NodePolicy {
        node: node.to_owned(),
        role: Role::Primary,
        epoch: 1,
        // With discovered peers the count is not known yet: wait for at least one replica until
        // the queue's replication task publishes the real requirement.
        required_acks: u32::try_from(match config.required_acks(node) {
            0 if config.replication.mode == repliq::ReplicationMode::Synchronous => 1,
            n => n,
        })
        .unwrap_or(u32::MAX),
        ack_timeout: config.ack_timeout(),
    };
    policy.write(&config.queue.persistence.path)
}

/// The primaries this node's replicas accept streams from: the discovered peers (static or
/// Kubernetes), kept current by a task that follows discovery's snapshots.
fn accepted_peers(discovery: &discovery::Discovery, node: &str) -> PeerSet {
    fn names(set: &discovery::PeerSet, node: &str) -> Vec<String> {
        set.peers
            .iter()
            .filter(|p| p.name != node)
            .map(|p| p.name.clone())
            .collect()
    }
    let mut snapshots = discovery.subscribe();
    let accepted = PeerSet::of(names(&snapshots.borrow_and_update(), node));
    let follower = accepted.clone();
    let node = node.to_owned();
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let current = names(&snapshots.borrow_and_update(), &node);
            follower.replace(current);
        }
    });
    accepted
}

/// How often the persistence path is scanned for queues to replicate. A queue created in
/// between already obeys the node policy (its producers wait for acknowledgements); the scan
/// only decides how soon they come.
const SCAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts a replication task for every queue under the persistence path that this node is
/// primary for (looking again every [`SCAN_INTERVAL`] for new queues and for demotions), until
/// `stop`. A change of the peer set restarts the replication tasks with the new set.
async fn run_primaries(
    config: Config,
    node: String,
    mut peer_sets: tokio::sync::watch::Receiver<discovery::PeerSet>,
    metrics: metrics::ReplicationMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let root = config.queue.persistence.path.clone();
    let mut peers = replica_addrs(&peer_sets.borrow_and_update(), &node);
    let mut discovery_open = true;
    // Queue directory → (its task's stop, the replicas it was started with, the task).
    let mut running: std::collections::BTreeMap<
        _,
        (tokio::sync::watch::Sender<bool>, Vec<ReplicaAddr>, _),
    > = std::collections::BTreeMap::new();
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_wait = stop.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = peer_sets.changed(), if discovery_open => {
                if changed.is_err() {
                    discovery_open = false;
                    continue;
                }
                // Tasks started with another set are stopped below and restarted once finished.
                peers = replica_addrs(&peer_sets.borrow_and_update(), &node);
            }
            _ = stop_wait.wait_for(|s| *s) => break,
        }
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.join("queue.meta").exists() {
                continue;
            }
            let primary = matches!(ReplicationState::load(&dir), Ok(s) if s.role == Role::Primary);
            if let Some((task_stop, with, _)) = running.get(&dir) {
                if !primary || *with != peers {
                    // Demoted (fenced by the election, or a newer primary appeared), or the peer
                    // set changed: drain; a new task starts once this one has finished.
                    let _ = task_stop.send(true);
                }
                continue;
            }
            if !primary || peers.is_empty() {
                continue;
            }
            let mut options =
                PrimaryOptions::new(node.clone(), peers.clone(), config.replication.mode);
            options.required_acks = config.required_acks_of(peers.len());
            options.ack_timeout = config.ack_timeout();
            options.max_replica_lag_segments = Some(config.max_replica_lag_segments());
            options.drain_timeout =
                std::time::Duration::from_millis(config.server.shutdown_grace_ms);
            options.observer = Some(Arc::new(metrics.clone()));
            tracing::info!(queue = %dir.display(), replicas = peers.len(), "replicating");
            let (task_stop_tx, task_stop_rx) = tokio::sync::watch::channel(false);
            let mut all_stop = stop.clone();
            let mut task_stop = task_stop_rx.clone();
            let (combined_tx, combined_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                tokio::select! {
                    _ = all_stop.wait_for(|s| *s) => {}
                    _ = task_stop.wait_for(|s| *s) => {}
                }
                let _ = combined_tx.send(true);
            });
            let task = tokio::spawn(run_primary(dir.clone(), options, combined_rx));
            running.insert(dir, (task_stop_tx, peers.clone(), task));
        }
        // Forget finished tasks (e.g. after a step-down) so a later promotion restarts them.
        let finished: Vec<_> = running
            .iter()
            .filter(|(_, (_, _, t))| t.is_finished())
            .map(|(d, _)| d.clone())
            .collect();
        for dir in finished {
            if let Some((_, _, task)) = running.remove(&dir)
                && let Ok(Err(e)) = task.await
            {
                tracing::warn!(queue = %dir.display(), error = %e, "replication stopped");
            }
        }
    }
    for (_, (_, _, task)) in running {
        let _ = task.await;
    }
}

fn replica_addrs(set: &discovery::PeerSet, node: &str) -> Vec<ReplicaAddr> {
    set.peers
        .iter()
        .filter(|p| p.name != node)
        .map(|p| ReplicaAddr {
            name: p.name.clone(),
            address: p.address.clone(),
        })
        .collect()
}
