//! Runs the configuration's `connectors:` (feature `connectors`): each is a task of
//! `repliq-connect`, started with the daemon and stopped before it drains replication. A
//! connector that stops with an error is logged and started again after a pause (its position
//! is durable: the sink's cursor, the source's unacknowledged upstream entries).

use std::path::Path;
use std::time::Duration;

use repliq_connect::{ConnectorConfig, Running};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a failed connector waits before it is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

/// The supervisor tasks of the running connectors.
#[derive(Debug, Default)]
pub(crate) struct Connectors {
    tasks: Vec<JoinHandle<()>>,
}

/// Starts every connector of `specs`, with relative queue paths resolved under `root`.
pub(crate) fn start(
    specs: &[ConnectorConfig],
    root: &Path,
    stop: watch::Receiver<bool>,
) -> Connectors {
    let tasks = specs
        .iter()
        .map(|spec| {
            let mut cfg = spec.clone();
            cfg.resolve_paths(root);
            tokio::spawn(supervise(cfg, stop.clone()))
        })
        .collect();
    Connectors { tasks }
}

async fn supervise(cfg: ConnectorConfig, mut stop: watch::Receiver<bool>) {
    loop {
        let running: Running = match repliq_connect::spawn(cfg.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(connector = %cfg.name, error = %e, "connector not started");
                return;
            }
        };
        tracing::info!(connector = %cfg.name, kind = cfg.kind.key(), queue = %cfg.queue.display(), "connector started");
        let watching = running;
        let stopping = loop {
            let stop_asked = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                () = tokio::time::sleep(Duration::from_millis(200)) => false,
            };
            if stop_asked {
                break true;
            }
            if watching.is_finished() {
                break false;
            }
        };
        if stopping {
            let stats = watching.stats().snapshot();
            if let Err(e) = watching.stop().await {
                tracing::warn!(connector = %cfg.name, error = %e, "connector stopped with an error");
            }
            tracing::info!(connector = %cfg.name, forwarded = stats.forwarded, dead_letters = stats.dead_letters, retries = stats.retries, "connector stopped");
            return;
        }
        if let Err(e) = watching.join().await {
            tracing::error!(connector = %cfg.name, error = %e, pause_ms = RESTART_PAUSE.as_millis() as u64, "connector failed; restarting");
        }
        let stop_asked = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(RESTART_PAUSE) => false,
        };
        if stop_asked {
            return;
        }
    }
}

impl Connectors {
    /// Waits for every connector to stop (after the stop signal was sent).
    pub(crate) async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
