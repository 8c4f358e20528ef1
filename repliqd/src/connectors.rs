//! Runs the configuration's `connectors:` (feature `connectors`): each is a task of
//! `repliq-connect`, started with the daemon and stopped before it drains replication. A
//! connector that stops with an error is logged and started again after a pause (its position
//! is durable: the sink's cursor, the source's unacknowledged upstream entries). Each
//! connector's counters go to `/metrics` (`repliq_connector_*`, labels connector, kind, queue),
//! monotonic across its restarts.

use std::path::Path;
use std::time::Duration;

use repliq_connect::{ConnectorConfig, Running, StatsSnapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{ConnectorLabels, ConnectorMetrics};

/// How often the supervisor copies a connector's counters to the metrics.
const METRICS_EVERY: Duration = Duration::from_millis(200);

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
    metrics: &ConnectorMetrics,
    stop: watch::Receiver<bool>,
) -> Connectors {
    let tasks = specs
        .iter()
        .map(|spec| {
            let labels = vec![
                ("connector", spec.name.clone()),
                ("kind", spec.kind.key().to_owned()),
                ("queue", spec.queue.display().to_string()),
            ];
            let mut cfg = spec.clone();
            cfg.resolve_paths(root);
            let m = Exported {
                metrics: metrics.clone(),
                labels,
                last: StatsSnapshot::default(),
            };
            tokio::spawn(supervise(cfg, m, stop.clone()))
        })
        .collect();
    Connectors { tasks }
}

/// Copies one connector's counters to the metrics: the growth since the last copy, so the
/// exported counters keep growing across restarts (each run starts its own `Stats` at 0).
struct Exported {
    metrics: ConnectorMetrics,
    labels: ConnectorLabels,
    last: StatsSnapshot,
}

impl Exported {
    fn update(&mut self, now: StatsSnapshot) {
        let m = &self.metrics;
        let l = &self.labels;
        m.forwarded
            .get_or_create(l)
            .inc_by(now.forwarded.saturating_sub(self.last.forwarded));
        m.duplicates
            .get_or_create(l)
            .inc_by(now.duplicates.saturating_sub(self.last.duplicates));
        m.retries
            .get_or_create(l)
            .inc_by(now.retries.saturating_sub(self.last.retries));
        m.dead_letters
            .get_or_create(l)
            .inc_by(now.dead_letters.saturating_sub(self.last.dead_letters));
        m.lag_records
            .get_or_create(l)
            .set(i64::try_from(now.lag).unwrap_or(i64::MAX));
        self.last = now;
    }

    fn set_up(&self, up: bool) {
        self.metrics.up.get_or_create(&self.labels).set(i64::from(up));
    }

    /// A new run: its counters start at 0.
    fn restarted(&mut self) {
        self.metrics.restarts.get_or_create(&self.labels).inc();
        self.last = StatsSnapshot::default();
    }
}

async fn supervise(cfg: ConnectorConfig, mut m: Exported, mut stop: watch::Receiver<bool>) {
    m.update(StatsSnapshot::default());
    m.set_up(false);
    m.metrics.restarts.get_or_create(&m.labels);
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
        m.set_up(true);
        let stopping = loop {
            let stop_asked = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                () = tokio::time::sleep(METRICS_EVERY) => false,
            };
            m.update(watching.stats().snapshot());
            if stop_asked {
                break true;
            }
            if watching.is_finished() {
                break false;
            }
        };
        m.set_up(false);
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
        m.restarted();
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
