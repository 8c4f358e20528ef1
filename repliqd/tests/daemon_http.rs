//! `repliqd` as a real process: configuration errors name the key and exit non-zero; a running
//! daemon serves `/healthz`, `/readyz` and `/metrics` (with the queues under its path) and exits 0
//! on SIGTERM.

mod support;

use support::{Daemon, http_get, metric, repliqd};

#[repliq::message(name = "test.Ping")]
#[derive(Debug, PartialEq)]
struct Ping(u64);

#[test]
fn invalid_config_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let good = Daemon::new(dir.path(), "a", "synchronous", &[], support::free_port());
    let text = std::fs::read_to_string(&good.config).unwrap();
    let cases = [
        (
            text.replace("mode: synchronous", "mode: eventually"),
            "replication.mode: unknown replication mode `eventually`",
        ),
        (
            text.replace("method: static", "method: kubernetes"),
            "replication.discovery.label_selector: required by `method: kubernetes`",
        ),
        (
            text.replace("capacity: 1000000", "capacity: 0"),
            "queue.capacity: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, text).unwrap();
        let out = repliqd(&path, "a", "warn").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "exit code");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "stderr {stderr:?} lacks {expected:?}"
        );
    }
    let out = repliqd(&dir.path().join("missing.yaml"), "a", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading config"));
}

#[test]
fn serves_health_readiness_and_metrics_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::new(dir.path(), "a", "asynchronous", &[], support::free_port());
    // A queue on the node, with three messages and one consumed.
    let mut q = repliq::JournalQueue::<Ping>::new(daemon.root.join("pings"), 100).unwrap();
    for i in 0..3 {
        q.enqueue(&Ping(i)).unwrap();
    }
    assert_eq!(q.dequeue().unwrap(), Some(Ping(0)));
    daemon.start();

    assert_eq!(http_get(daemon.http(), "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(daemon.http(), "/readyz"), (200, "ready\n".into()));
    let (status, body) = http_get(daemon.http(), "/metrics");
    assert_eq!(status, 200);
    for (sample, value) in [
        (r#"repliq_enqueued_records_total{queue="pings"}"#, 3.0),
        (
            r#"repliq_dequeued_records_total{queue="pings",cursor="default"}"#,
            1.0,
        ),
        (
            r#"repliq_backlog_records{queue="pings",cursor="default"}"#,
            2.0,
        ),
        (r#"repliq_segments{queue="pings"}"#, 1.0),
    ] {
        assert_eq!(metric(&body, sample), Some(value), "{sample} in:\n{body}");
    }
    assert!(metric(&body, r#"repliq_disk_bytes{queue="pings"}"#).is_some_and(|b| b > 0.0));
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    assert_eq!(http_get(daemon.http(), "/nope").0, 404);

    // The values follow the queue.
    q.enqueue(&Ping(3)).unwrap();
    let (_, body) = http_get(daemon.http(), "/metrics");
    assert_eq!(
        metric(&body, r#"repliq_enqueued_records_total{queue="pings"}"#),
        Some(4.0)
    );

    // SIGTERM: a graceful stop with exit code 0.
    let mut child = daemon.child.take().unwrap();
    // SAFETY: plain FFI call with the pid of our own live child and a valid signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
