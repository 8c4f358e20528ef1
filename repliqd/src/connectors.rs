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
        self.metrics
            .up
            .get_or_create(&self.labels)
            .set(i64::from(up));
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
    m.metrics.restarts.get_or_create(&m.labels).inc_by(0);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::metrics::Metrics;

    #[repliq::message(name = "test.Alert")]
    #[derive(Debug, Clone, PartialEq)]
    struct Alert {
        id: u64,
        text: String,
    }

    /// The `connectors:` example of docs/CONNECTORS.md parses, passes the checks and builds
    /// every connector it names (URLs, templates): it works as written.
    #[test]
    fn the_documented_connectors_example_is_valid() {
        let doc = include_str!("../../docs/CONNECTORS.md");
        let start = doc
            .find("```yaml\nconnectors:\n")
            .expect("a yaml block starting with connectors:")
            + "```yaml\n".len();
        let len = doc[start..].find("```").expect("the block ends");
        #[derive(serde::Deserialize)]
        struct Example {
            connectors: Vec<ConnectorConfig>,
        }
        let example: Example = serde_norway::from_str(&doc[start..start + len]).unwrap();
        let mut kinds = Vec::new();
        for c in example.connectors {
            c.check().unwrap();
            kinds.push(c.kind.key());
            // spawn builds the remote side first (refusing bad settings) and connects lazily.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = c.clone();
                c.queue = "/nonexistent/queue".into();
                c.dead_letter = None;
                let running = repliq_connect::spawn(c).unwrap();
                // It fails on the missing queue, not on its settings.
                let err = running.join().await.unwrap_err().to_string();
                assert!(err.contains("/nonexistent/queue"), "{err}");
            });
        }
        for k in [
            "redis_sink",
            "redis_source",
            "nats_sink",
            "nats_source",
            "rabbitmq_sink",
            "rabbitmq_source",
            "slack_sink",
            "influxdb_sink",
            "kafka_sink",
            "kafka_source",
        ] {
            assert!(kinds.contains(&k), "the example has no {k}");
        }
    }

    /// A webhook that answers `200 ok` to every POST and counts them.
    async fn webhook() -> (String, Arc<std::sync::atomic::AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let posts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = posts.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(sock);
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end().to_ascii_lowercase();
                            if line.is_empty() {
                                break;
                            }
                            if let Some(v) = line.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if r.get_mut().write_all(ok.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, posts)
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series))
            .map(|l| l[series.len()..].trim())
    }

    /// A connector the daemon runs shows its counters at /metrics: forwarded, dead letters,
    /// retries, lag and up, labelled with its name, kind and queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connector_counters_reach_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = repliq::JournalQueue::<Alert>::new(dir.path().join("alerts"), 1 << 16).unwrap();
        for id in 0..5 {
            q.enqueue(&Alert {
                id,
                text: "disk full".into(),
            })
            .unwrap();
        }
        let (url, posts) = webhook().await;
        let spec: ConnectorConfig = serde_norway::from_str(&format!(
            "name: alerts-to-slack\nqueue: alerts\nslack_sink:\n  webhook_url: {url}\n  rules:\n    \
             - {{ when: {{ field: id, below: 4 }}, text: \"alert {{id}}: {{text}}\" }}\n"
        ))
        .unwrap();
        let metrics = Metrics::new(
            dir.path().to_path_buf(),
            Arc::new(crate::supervise::Health::default()),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let running = start(&[spec], dir.path(), &metrics.connectors, stop_rx);
        let labels = r#"{connector="alerts-to-slack",kind="slack_sink",queue="alerts"}"#;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = metrics.encode().unwrap();
            if line(&text, &format!("repliq_connector_forwarded_total{labels}")) == Some("5")
                && line(&text, &format!("repliq_connector_lag_records{labels}")) == Some("0")
            {
                assert_eq!(
                    line(&text, &format!("repliq_connector_up{labels}")),
                    Some("1")
                );
                for zero in ["dead_letters_total", "retries_total", "restarts_total"] {
                    assert_eq!(
                        line(&text, &format!("repliq_connector_{zero}{labels}")),
                        Some("0"),
                        "{zero}"
                    );
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no connector counters in:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Ids 0 to 3 match the rule; 4 does not and is not posted.
        assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 4);
        stop_tx.send(true).unwrap();
        running.join().await;
        let text = metrics.encode().unwrap();
        assert_eq!(
            line(&text, &format!("repliq_connector_up{labels}")),
            Some("0")
        );
    }
}
