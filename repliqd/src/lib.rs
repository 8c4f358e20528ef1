//! `repliqd`, the repliq node daemon, as a library (the `repliqd` binary is a thin main over it): [`run`] serves gRPC (replication) and HTTP
//! (`/metrics`, `/healthz`, `/readyz`) until its shutdown future completes, then drains.

pub mod cli;
pub mod client_service;
mod closing;
pub mod config;
#[cfg(feature = "connectors")]
mod connectors;
pub mod discovery;
pub mod election;
mod http;
pub mod http_auth;
#[cfg(feature = "kubernetes")]
pub mod kube_client;
pub mod metrics;
pub mod node_events;
pub mod root_lock;
pub mod scan;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// The environment variable of a test hook: the gRPC task fails this many milliseconds after
/// it started serving (its listener closes), as a task of a real node could fail. Tests use it
/// to check the supervision; it is not meant for production.
pub const TEST_FAIL_GRPC_AFTER_MS: &str = "REPLIQD_TEST_FAIL_GRPC_AFTER_MS";

/// Runs the daemon until `shutdown` completes. `on_bound` is called once both listeners are
/// bound, with their addresses.
///
/// Every long-running task runs under supervision (see [`supervise`]): if one stops while the
/// daemon runs, `/healthz` and `/readyz` answer 503 naming it for `server.failure_linger_ms`,
/// the other tasks drain, and `run` returns an error (the binary exits with status 1).
///
/// # Errors
///
/// [`QueueError::Io`] if a listener cannot be bound or the persistence path cannot be created;
/// [`QueueError::Other`] naming the task that stopped while the daemon ran.
pub async fn run(
    config: Config,
    node_name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound),
) -> Result<(), QueueError> {
    let mut discovery = discovery::start(&config, &node_name)?;
    let root = config.queue.persistence.path.clone();
    // 0700 (or a set-group-ID parent's group bits) whatever the umask, as queue directories.
    repliq::modes::create_dir_all(&root)
        .map_err(|e| QueueError::io(format!("creating {}", root.display()), e))?;
    warn_if_open_to_others(&root);
    // One daemon per persistence path, for as long as this one runs.
    let _root_lock = root_lock::RootLock::acquire(&root, &node_name)?;
    let policy = write_node_policy(&config, &node_name)?;
    adopt_node_policy(&root, &policy);
    let http_auth = match &config.server.http_auth {
        Some(auth) => Some(Arc::new(http_auth::HttpAuth::new(auth).map_err(|e| {
            QueueError::InvalidConfig(format!("server.http_auth.token_file: {e}"))
        })?)),
        None => None,
    };
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

    let health = Arc::new(supervise::Health::default());
    let state = Arc::new(http::HttpState {
        metrics: metrics::Metrics::new(root.clone(), Arc::clone(&health)),
        health: Arc::clone(&health),
    });
    let console = Arc::new(ui::Console::new(node_name.clone(), root.clone()));
    let replication_metrics = state.metrics.replication.clone();
    // The events queue exists before the connectors that forward it start.
    let events = match &config.events {
        Some(cfg) => {
            let path = cfg.path(&root);
            let queue = node_events::open_queue(&path).map_err(|e| {
                QueueError::InvalidConfig(format!("events.queue: {}: {e}", path.display()))
            })?;
            Some((cfg.clone(), queue))
        }
        None => None,
    };
    let tls_metrics = state.metrics.tls.clone();
    let election_metrics = state.metrics.election.clone();
    #[cfg(feature = "connectors")]
    let connector_metrics = state.metrics.connectors.clone();
    let client_metrics = state.metrics.clients.clone();
    // `stop` stops every task but HTTP, which answers until the others have drained.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (http_stop_tx, mut http_stop) = tokio::sync::watch::channel(false);
    let mut tasks = supervise::Tasks::new(Arc::clone(&health));

    let router = http_auth::protect(
        http::router(Arc::clone(&state), ui::routes(Arc::clone(&console))),
        http_auth,
    );
    let https = match &config.server.http_tls {
        Some(files) => {
            let reloading = tls::ReloadingConfig::https(files.clone(), tls_metrics.clone())
                .map_err(|e| QueueError::InvalidConfig(format!("server.http_tls: {e}")))?;
            Some(Arc::new(reloading))
        }
        None => None,
    };
    tasks.spawn("http", async move {
        // The console's look every second runs as long as HTTP serves.
        let _sampler = supervise::AbortOnDrop(tokio::spawn(ui::sample_forever(
            Arc::clone(&state),
            console,
        )));
        let stopped = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        match https {
            Some(config) => {
                let _watch = supervise::AbortOnDrop(tokio::spawn(tls::watch(
                    Arc::clone(&config),
                    TLS_WATCH_PERIOD,
                )));
                let listener = tls::TlsListener::new(http_listener, config)
                    .map_err(|e| format!("serving HTTPS: {e}"))?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                axum::serve(http_listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        }
        .map_err(|e| format!("serving HTTP: {e}"))
    });

    let current = discovery.current();
    health
        .discovery_ready
        .store(current.ready, Ordering::Release);
    let accepted = PeerSet::with_identities(peer_names(&current, &node_name));
    let replicas = ReplicaService::with_peers(root.clone(), accepted.clone());
    let (replicas, tls_config) = match &config.server.tls {
        Some(files) => {
            let reloading = tls::ReloadingConfig::new(files.clone(), tls_metrics)
                .map_err(|e| QueueError::InvalidConfig(format!("server.tls: {e}")))?;
            let reloading = Arc::new(reloading);
            tokio::spawn(tls::watch(Arc::clone(&reloading), TLS_WATCH_PERIOD));
            (replicas.authenticated(), Some(reloading))
        }
        None => {
            tracing::warn!(
                "server.tls is not set: replication streams are plain text and peers are not \
                 authenticated (anyone who reaches the gRPC port can claim a peer's name)"
            );
            (replicas, None)
        }
    };
    let service = closing::Closing::new(replicas.into_server(), stop_rx.clone());
    // Remote producers and consumers (repliq.client.v1) on the same port, when enabled
    // (`server.clients`, docs/CLIENTS.md).
    let clients = config.server.clients.enabled.then(|| {
        if config.server.clients.rules.is_empty() {
            tracing::warn!(
                tls = config.server.tls.is_some(),
                "server.clients has no rules: every client that reaches the gRPC port (with \
                 server.tls: every client with a certificate from the CA) may read and write \
                 every queue"
            );
        }
        closing::Closing::new(
            client_service::ClientService::new(
                root.clone(),
                node_name.clone(),
                discovery.subscribe(),
                client_metrics.clone(),
            )
            .with_rules(config.server.clients.rules.clone())
            .into_server(),
            stop_rx.clone(),
        )
    });
    let mut grpc_stop = stop_rx.clone();
    let grpc_health = Arc::clone(&health);
    let fail_after = std::env::var(TEST_FAIL_GRPC_AFTER_MS)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    // Serving from now on: the listener is bound, connections wait in its backlog until the
    // task accepts them.
    health.grpc_serving.store(true, Ordering::Release);
    tasks.spawn("grpc", async move {
        let mut server = tonic::transport::Server::builder()
            // A primary that vanished without a FIN: its stream ends in seconds, not minutes.
            .http2_keepalive_interval(Some(repliq::replication::STREAM_KEEPALIVE))
            .http2_keepalive_timeout(Some(repliq::replication::STREAM_KEEPALIVE_TIMEOUT));
        let router = server.add_service(service).add_optional_service(clients);
        let shutdown = async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        };
        let serve = async move {
            match tls_config {
                // Mutual TLS from our own acceptor (certificates reloaded when they change).
                Some(config) => {
                    router
                        .serve_with_incoming_shutdown(
                            tls::incoming(grpc_listener, config),
                            shutdown,
                        )
                        .await
                }
                None => {
                    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
                        .with_nodelay(Some(true))
                        .with_keepalive(Some(std::time::Duration::from_secs(10)));
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
            }
        };
        let result = match fail_after {
            None => serve.await.map_err(|e| format!("serving gRPC: {e}")),
            Some(after) => tokio::select! {
                r = serve => r.map_err(|e| format!("serving gRPC: {e}")),
                () = tokio::time::sleep(after) => Err(format!(
                    "failed on purpose by the test hook {TEST_FAIL_GRPC_AFTER_MS}"
                )),
            },
        };
        grpc_health.grpc_serving.store(false, Ordering::Release);
        result
    });

    if let Some(watcher) = discovery.take_task() {
        let mut watcher = supervise::AbortOnDrop(watcher);
        let mut stop = stop_rx.clone();
        tasks.spawn("discovery", async move {
            tokio::select! {
                r = watcher.join() => r.and(Err("the watcher returned".to_owned())),
                _ = stop.wait_for(|s| *s) => Ok(()),
            }
        });
    }
    tasks.spawn(
        "discovery-follower",
        follow_discovery(
            discovery.subscribe(),
            node_name.clone(),
            accepted,
            Arc::clone(&health),
            stop_rx.clone(),
        ),
    );
    let authorities = election::Authorities::default();
    if let Some(election) = election::start(
        &config,
        &node_name,
        authorities.clone(),
        stop_rx.clone(),
        election_metrics,
    )? {
        tasks.spawn("election", election);
    }
    if let Some((cfg, queue)) = events {
        tasks.spawn(
            "node-events",
            node_events::run(
                cfg,
                node_name.clone(),
                root.clone(),
                queue,
                replication_metrics.clone(),
                stop_rx.clone(),
            ),
        );
    }
    tasks.spawn(
        "replication",
        run_primaries(
            config.clone(),
            node_name.clone(),
            config.election.is_some().then_some(authorities),
            discovery.subscribe(),
            replication_metrics,
            stop_rx.clone(),
        ),
    );
    #[cfg(feature = "connectors")]
    let connectors = connectors::start(
        &config.connectors,
        &root,
        &connector_metrics,
        stop_rx.clone(),
    );
    health.started.store(true, Ordering::Release);
    // Said once everything the configuration names (certificates, tokens, queues) was loaded:
    // a bad file ends the daemon with its error before this line, never after it.
    tracing::info!(node = %node_name, grpc = %bound.grpc, http = %bound.http, root = %root.display(), "repliqd listening");
    on_bound(bound);

    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    let failure = tokio::select! {
        () = &mut shutdown => None,
        Some((task, result)) = tasks.next() => {
            Some((task, result.err().unwrap_or_else(|| "returned while the daemon was running".to_owned())))
        }
    };
    let linger = std::time::Duration::from_millis(config.server.failure_linger_ms);
    if let Some((task, why)) = &failure {
        health.failed(task, why.clone());
        tracing::error!(
            task,
            error = %why,
            linger_ms = config.server.failure_linger_ms,
            "a task of the daemon stopped: not ready, exiting with status 1 after draining"
        );
        if tasks.contains("http") {
            tokio::select! {
                () = tokio::time::sleep(linger) => {}
                () = &mut shutdown => {}
            }
        }
    } else {
        tracing::info!("shutting down: draining replication");
    }
    health.stopping.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    #[cfg(feature = "connectors")]
    connectors.join().await;
    drain(&mut tasks, &config).await;
    let _ = http_stop_tx.send(true);
    while let Some((task, result)) = tasks.next().await {
        if let Err(e) = result {
            tracing::warn!(task, error = %e, "stopped with an error while shutting down");
        }
    }
    drop(discovery);
    match failure {
        Some((task, why)) => Err(QueueError::Other(format!(
            "the daemon task `{task}` stopped: {why}"
        ))),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Waits for every task but HTTP to end after the stop signal: replication drains (up to the
/// grace period, which its tasks keep themselves), the gRPC server closes its streams at once
/// ([`closing`]); whatever still runs a second after the grace period is cancelled.
async fn drain(tasks: &mut supervise::Tasks, config: &Config) {
    let grace = std::time::Duration::from_millis(config.server.shutdown_grace_ms)
        + std::time::Duration::from_secs(1);
    let deadline = tokio::time::Instant::now() + grace;
    let others = |tasks: &supervise::Tasks| tasks.names().iter().any(|n| *n != "http");
    let mut cancelled = false;
    while others(tasks) {
        let next = if cancelled {
            Ok(tasks.next().await)
        } else {
            tokio::time::timeout_at(deadline, tasks.next()).await
        };
        match next {
            Ok(Some((task, Err(e)))) => {
                tracing::warn!(task, error = %e, "stopped with an error while shutting down");
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(_) => {
                let still: Vec<&str> = tasks.names().into_iter().filter(|n| *n != "http").collect();
                tracing::info!(
                    grace_ms = config.server.shutdown_grace_ms,
                    tasks = ?still,
                    "cancelling what still runs after the grace period"
                );
                for task in still {
                    tasks.abort(task);
                }
                cancelled = true;
            }
        }
    }
}

/// Writes the node policy into the persistence root, so that a queue a producer creates there
/// waits for the replicas' acknowledgements from its first message, before this daemon has
/// found it. The file stays when the daemon stops: a queue created while it is down still waits
/// (and times out) rather than silently going unreplicated.
fn write_node_policy(config: &Config, node: &str) -> Result<NodePolicy, QueueError> {
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
    policy.write(&config.queue.persistence.path)?;
    Ok(policy)
}

/// Queues that were in the persistence path before this daemon started wait for replicas from
/// now on (before anything is served), not only once their replication task runs: until then a
/// synchronous node would acknowledge their producers' writes that no replica holds.
fn adopt_node_policy(root: &Path, policy: &NodePolicy) {
    for (dir, primary) in scan::QueueScanner::new(root.to_path_buf()).scan() {
        if !primary {
            continue;
        }
        match ReplicationState::adopt_node_policy(&dir, policy) {
            Ok(true) => {
                tracing::info!(queue = %dir.display(), required_acks = policy.required_acks, "an existing queue waits for replicas from now on")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(queue = %dir.display(), error = %e, "cannot apply the node's replication policy")
            }
        }
    }
}

/// The other nodes, each with the name its certificate is issued to.
fn peer_names(set: &discovery::PeerSet, node: &str) -> Vec<(String, String)> {
    set.peers
        .iter()
        .filter(|p| p.name != node)
        .map(|p| (p.name.clone(), p.identity().to_owned()))
        .collect()
}

/// Follows discovery's snapshots until `stop`: the primaries this node's replicas accept streams
/// from (`accepted`), and discovery's part of `/readyz`, logging what is missing while it is not
/// ready.
async fn follow_discovery(
    mut snapshots: tokio::sync::watch::Receiver<discovery::PeerSet>,
    node: String,
    accepted: PeerSet,
    health: Arc<supervise::Health>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        accepted.replace_with_identities(peer_names(&snapshot, &node));
        health
            .discovery_ready
            .store(snapshot.ready, Ordering::Release);
        if !snapshot.ready {
            tracing::warn!(
                problem = snapshot
                    .problem
                    .as_deref()
                    .unwrap_or("waiting for the first list"),
                "not ready: discovery has no complete peer set"
            );
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Err("discovery stopped publishing peer sets".to_owned());
                }
            }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Logs a warning if users other than the owner and its group may read or enter `root` (a
/// directory made before the daemon, e.g. by hand or by the kubelet): queue files inside are
/// 0600, but their names are listed.
fn warn_if_open_to_others(root: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(root)
        && m.mode() & 0o005 != 0
    {
        tracing::warn!(
            path = %root.display(),
            mode = format!("{:04o}", m.mode() & 0o7777),
            "the persistence path is open to other users: `chmod o-rwx` it (docs/SECURITY.md)"
        );
    }
}

/// How often the TLS files are re-checked without a new connection (`tls::watch`).
const TLS_WATCH_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the persistence path is looked at for queues to replicate (a cheap generation
/// check, see [`scan`]). A queue created in between already obeys the node policy (its
/// producers wait for acknowledgements); the scan only decides how soon they come.
const SCAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// One queue's replication task: its stop, the replicas it was started with, the task.
type Running = (
    tokio::sync::watch::Sender<bool>,
    Vec<ReplicaAddr>,
    tokio::task::JoinHandle<Result<(), QueueError>>,
);

/// Starts a replication task for every queue under the persistence path that this node is
/// primary for (looking again every [`SCAN_INTERVAL`] for new queues and for demotions), until
/// `stop`. A change of the peer set restarts the replication tasks with the new set. A queue's
/// task that fails is logged and started again at a later look (its error is usually a replica
/// or a file it cannot reach); one that panics is a bug and stops the daemon.
async fn run_primaries(
    config: Config,
    node: String,
    authorities: Option<election::Authorities>,
    mut peer_sets: tokio::sync::watch::Receiver<discovery::PeerSet>,
    metrics: metrics::ReplicationMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let root = config.queue.persistence.path.clone();
    let mut peers = replica_addrs(&peer_sets.borrow_and_update(), &node);
    let mut discovery_open = true;
    let mut running: std::collections::BTreeMap<PathBuf, Running> =
        std::collections::BTreeMap::new();
    let mut scanner = Some(scan::QueueScanner::new(root));
    // Without an election no lease limits local producers: a lease word an earlier, elected run
    // of the daemon left in a primary's meta file is lifted once.
    let mut lease_lifted = std::collections::BTreeSet::new();
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_wait = stop.clone();
    let mut panicked = None;
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
        // The look is blocking file I/O: on the blocking pool.
        let Some(mut s) = scanner.take() else {
            break;
        };
        let (s, queues) = tokio::task::spawn_blocking(move || {
            let queues = s.scan();
            (s, queues)
        })
        .await
        .map_err(|e| format!("the queue scan failed: {e}"))?;
        scanner = Some(s);
        for (dir, primary) in queues {
            if authorities.is_none() && primary && !lease_lifted.contains(&dir) {
                let owned = dir.clone();
                match tokio::task::spawn_blocking(move || repliq::replication::clear_lease(&owned))
                    .await
                {
                    Ok(Ok(())) => {
                        lease_lifted.insert(dir.clone());
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(queue = %dir.display(), error = %e, "cannot lift the lease word an election left");
                    }
                    Err(e) => return Err(format!("lifting the lease of {}: {e}", dir.display())),
                }
            }
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
            options.ack_level = config.replication.ack_level;
            options.max_replica_lag_segments = Some(config.max_replica_lag_segments());
            options.drain_timeout =
                std::time::Duration::from_millis(config.server.shutdown_grace_ms);
            options.observer = Some(Arc::new(metrics.clone()));
            options.authority = authorities.as_ref().map(|a| a.of(&dir));
            options.tls = config.server.tls.as_ref().map(config::TlsConfig::files);
            tracing::info!(queue = %dir.display(), replicas = peers.len(), "replicating");
            let (task_stop_tx, task_stop_rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(run_primary(dir.clone(), options, task_stop_rx));
            running.insert(dir, (task_stop_tx, peers.clone(), task));
        }
        // Forget finished tasks (e.g. after a step-down) so a later promotion restarts them.
        let finished: Vec<_> = running
            .iter()
            .filter(|(_, (_, _, t))| t.is_finished())
            .map(|(d, _)| d.clone())
            .collect();
        for dir in finished {
            let Some((_, _, task)) = running.remove(&dir) else {
                continue;
            };
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(queue = %dir.display(), error = %e, "replication stopped");
                }
                Err(e) => {
                    panicked = Some(format!("the replication of {} stopped: {e}", dir.display()));
                }
            }
        }
        if panicked.is_some() {
            break;
        }
    }
    for (task_stop, _, _) in running.values() {
        let _ = task_stop.send(true);
    }
    for (_, (_, _, task)) in running {
        let _ = task.await;
    }
    panicked.map_or(Ok(()), Err)
}

fn replica_addrs(set: &discovery::PeerSet, node: &str) -> Vec<ReplicaAddr> {
    set.peers
        .iter()
        .filter(|p| p.name != node)
        .map(|p| ReplicaAddr::new(p.name.clone(), p.address.clone()).with_identity(p.identity()))
        .collect()
}
