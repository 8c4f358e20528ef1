//! Supervision of the daemon's long-running tasks.
//!
//! Every long-running task of [`crate::run`] (HTTP, gRPC, discovery, the election, the replication
//! scheduler, ...) runs in one [`Tasks`] set. None of them is meant to end before the daemon
//! stops: one that returns, fails or panics while the daemon runs takes the daemon down. The
//! daemon then answers 503 on `/healthz` and `/readyz` naming the task for
//! `server.failure_linger_ms`, drains the other tasks, and exits with status 1 after one `ERROR`
//! log line; its supervisor (Kubernetes, systemd) restarts it. Restarting a task in place was not
//! chosen: a task that died left its part of the node (a listener, a watcher, leases) in an unknown
//! state, and a fresh process starts from the files, which are the truth.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::{AbortHandle, JoinSet};

/// What `/healthz` and `/readyz` read about the daemon itself (its tasks, gRPC, discovery).
#[derive(Debug, Default)]
pub struct Health {
    /// Task name → `None` while it runs, the reason once it stopped while the daemon ran.
    tasks: Mutex<BTreeMap<&'static str, Option<String>>>,
    /// The gRPC server task is serving.
    pub grpc_serving: AtomicBool,
    /// Discovery has a complete peer set.
    pub discovery_ready: AtomicBool,
    /// Set once startup finished (every task spawned, listeners bound).
    pub started: AtomicBool,
    /// Set when the daemon begins to shut down (signal or task failure).
    pub stopping: AtomicBool,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Option<String>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `task` runs.
    pub fn running(&self, task: &'static str) {
        self.lock().insert(task, None);
    }

    /// Records that `task` stopped while the daemon ran, and why.
    pub fn failed(&self, task: &'static str, why: String) {
        self.lock().insert(task, Some(why));
    }

    /// Every task with `true` while it runs (for the `repliq_daemon_task_up` metric).
    #[must_use]
    pub fn task_states(&self) -> Vec<(&'static str, bool)> {
        self.lock().iter().map(|(k, v)| (*k, v.is_none())).collect()
    }

    /// `task failed: why` for every task that stopped while the daemon ran.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|why| format!("task {k} stopped: {why}")))
            .collect()
    }

    /// Why the daemon is not ready, if it is not (replication health is added by the caller).
    #[must_use]
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.stopping.load(Ordering::Acquire) {
            out.push("shutting down".to_owned());
        }
        out.extend(self.failures());
        if !self.started.load(Ordering::Acquire) {
            out.push("starting".to_owned());
        } else {
            if !self.grpc_serving.load(Ordering::Acquire) {
                out.push("gRPC (replication) is not serving".to_owned());
            }
            if !self.discovery_ready.load(Ordering::Acquire) {
                out.push("discovery has no complete peer set".to_owned());
            }
        }
        out
    }
}

/// The daemon's long-running tasks: a [`JoinSet`] whose tasks carry their names and report
/// their end to [`Health`].
pub struct Tasks {
    set: JoinSet<(&'static str, Result<(), String>)>,
    handles: BTreeMap<&'static str, AbortHandle>,
    health: std::sync::Arc<Health>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.handles.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tasks {
    /// An empty set reporting to `health`.
    #[must_use]
    pub fn new(health: std::sync::Arc<Health>) -> Self {
        Tasks {
            set: JoinSet::new(),
            handles: BTreeMap::new(),
            health,
        }
    }

    /// Runs `task` under `name` (names are unique).
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        self.health.running(name);
        let handle = self.set.spawn(async move { (name, task.await) });
        self.handles.insert(name, handle);
    }

    /// Whether `name` still runs.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.handles.contains_key(name)
    }

    /// How many tasks still run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// No task runs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Waits for the next task to end: its name and `Err(why)` if it failed or panicked
    /// (`Ok` if it returned `Ok`). `None` when no task is left.
    pub async fn next(&mut self) -> Option<(&'static str, Result<(), String>)> {
        loop {
            let joined = self.set.join_next_with_id().await?;
            let (name, result) = match joined {
                Ok((_, (name, result))) => (name, result),
                Err(e) => {
                    let Some(name) = self
                        .handles
                        .iter()
                        .find(|(_, h)| h.id() == e.id())
                        .map(|(n, _)| *n)
                    else {
                        continue;
                    };
                    let why = if e.is_panic() {
                        let panic = e.into_panic();
                        let text = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_owned());
                        format!("panicked: {text}")
                    } else {
                        "cancelled".to_owned()
                    };
                    (name, Err(why))
                }
            };
            self.handles.remove(name);
            return Some((name, result));
        }
    }

    /// Aborts `name` if it still runs (its end is still reported by [`Tasks::next`]).
    pub fn abort(&self, name: &str) {
        if let Some(h) = self.handles.get(name) {
            h.abort();
        }
    }

    /// The names of the tasks still running.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        self.handles.keys().copied().collect()
    }
}

/// Aborts a task when dropped (for tasks spawned by others whose handle a supervised task awaits).
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AbortOnDrop {
    /// Waits for the task; `Err` if it panicked or was cancelled.
    ///
    /// # Errors
    ///
    /// A sentence naming the panic.
    pub async fn join(&mut self) -> Result<(), String> {
        (&mut self.0).await.map_err(|e| {
            if e.is_panic() {
                "panicked".to_owned()
            } else {
                "cancelled".to_owned()
            }
        })
    }
}
