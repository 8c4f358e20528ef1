//! The daemon supervises its tasks: a gRPC task that fails makes `/healthz` and `/readyz` answer
//! 503 naming it, then the daemon exits with status 1 (its JSON log names the task); and a
//! replica's daemon stops promptly on SIGTERM although its primary keeps the replication stream
//! open; and a missing certificate ends it before it says "listening".

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Daemon, held, http_get, metric, repliqd, wait_until};

#[repliq::message(name = "test.Beat")]
#[derive(Debug, PartialEq)]
struct Beat(u64);

fn set_server_option(daemon: &Daemon, line: &str) {
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let text = text.replace("  shutdown_grace_ms: 2000\n", &format!("{line}\n"));
    std::fs::write(&daemon.config, text).unwrap();
}

fn sigterm(child: &Child) {
    // SAFETY: plain FFI call with the pid of our own live child and a valid signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

/// Waits (bounded) for the child to exit.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failed_grpc_task_makes_the_daemon_unready_then_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::new(dir.path(), "a", "asynchronous", &[], support::free_port());
    set_server_option(
        &daemon,
        "  shutdown_grace_ms: 2000\n  failure_linger_ms: 8000",
    );
    let log = std::fs::File::create(daemon.log_path()).unwrap();
    let mut child = repliqd(&daemon.config, "a", "info")
        .args(["--log-format", "json"])
        .env(repliqd::TEST_FAIL_GRPC_AFTER_MS, "1500")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("repliqd listening"), "{line:?}");
    let started = Instant::now();
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.grpc_port));

    // Healthy while the task runs (the hook fires 1.5 s after start).
    let (status, _) = http_get(daemon.http(), "/healthz");
    let (ready, ready_body) = http_get(daemon.http(), "/readyz");
    let body = http_get(daemon.http(), "/metrics").1;
    if started.elapsed() < Duration::from_millis(1200) {
        assert_eq!(status, 200);
        assert_eq!((ready, ready_body.as_str()), (200, "ready\n"));
        assert_eq!(
            metric(&body, r#"repliq_daemon_task_up{task="grpc"}"#),
            Some(1.0)
        );
        assert_eq!(metric(&body, "repliq_daemon_ready"), Some(1.0));
    }

    // Then both say why, while the daemon lingers.
    wait_until("/readyz to answer 503", || {
        http_get(daemon.http(), "/readyz").0 == 503
    });
    let (status, body) = http_get(daemon.http(), "/readyz");
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("task grpc stopped"), "{body}");
    assert!(body.contains("gRPC (replication) is not serving"), "{body}");
    let (status, body) = http_get(daemon.http(), "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("task grpc stopped"), "{body}");
    let metrics = http_get(daemon.http(), "/metrics").1;
    assert_eq!(
        metric(&metrics, r#"repliq_daemon_task_up{task="grpc"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&metrics, "repliq_daemon_ready"), Some(0.0));
    assert!(
        std::net::TcpStream::connect_timeout(&grpc, Duration::from_secs(1)).is_err(),
        "the gRPC listener is closed"
    );

    // Then it exits with status 1. The log is JSON to its last line: one ERROR line naming the
    // task when it stopped, one when the process exits.
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "exit status {status}");
    let log = std::fs::read_to_string(daemon.log_path()).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "no {key} in {line}");
        }
        assert!(line.get("fields").is_none(), "fields are flattened: {line}");
    }
    let listening = lines
        .iter()
        .find(|l| l["message"] == "repliqd listening")
        .unwrap();
    assert_eq!(listening["node"], "a");
    let errors: Vec<&serde_json::Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 2, "{log}");
    assert_eq!(errors[0]["task"], "grpc", "{log}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("exiting with status 1"),
        "{log}"
    );
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .contains("the daemon task `grpc` stopped"),
        "{log}"
    );
    assert!(std::ptr::eq(errors[1], lines.last().unwrap()), "{log}");
}

#[test]
fn a_replica_exits_promptly_on_sigterm_while_its_primary_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "asynchronous");
    // A long grace: before the streams were closed on shutdown, the replica waited all of it.
    for n in &nodes {
        set_server_option(n, "  shutdown_grace_ms: 30000");
    }
    for n in &mut nodes {
        n.start();
    }
    let mut q = repliq::JournalQueue::<Beat>::new(nodes[0].root.join("beats"), 10_000).unwrap();
    for i in 0..100 {
        q.enqueue(&Beat(i)).unwrap();
    }
    let replica_dir = nodes[1].root.join("beats");
    wait_until("the replica to hold 100 records", || {
        held(&replica_dir) == 100
    });

    let mut child = nodes[1].child.take().unwrap();
    let sent = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let took = sent.elapsed();
    eprintln!("replica exited {took:?} after SIGTERM");
    assert!(status.success(), "exit status {status}");
    // Far below the 30 s grace it used to wait (a bound for a loaded machine, not a speed goal;
    // an idle machine measures tens of milliseconds).
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let log = std::fs::read_to_string(nodes[1].log_path()).unwrap();
    assert!(!log.contains("cancelling what still runs"), "{log}");

    // The primary carries on, and the replica catches up after a restart.
    for i in 100..200 {
        q.enqueue(&Beat(i)).unwrap();
    }
    nodes[1].start();
    wait_until("the restarted replica to hold 200 records", || {
        held(&replica_dir) == 200
    });
    let mut primary = nodes[0].child.take().unwrap();
    sigterm(&primary);
    assert!(wait_exit(&mut primary, Duration::from_secs(60)).success());
}

/// A configuration naming a certificate that is not there ends the daemon with an error naming
/// the key, before it says "listening" on standard output or in its log: a supervisor (or
/// deploy-check) that waits for that line never takes a daemon that cannot serve for a ready one.
#[test]
fn a_missing_certificate_ends_the_daemon_before_it_says_listening() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::new(dir.path(), "a", "asynchronous", &[], support::free_port());
    let missing = dir.path().join("no-such-dir");
    set_server_option(
        &daemon,
        &format!(
            "  shutdown_grace_ms: 2000\n  tls:\n    ca: {0}/ca.pem\n    cert: {0}/cert.pem\n    key: {0}/key.pem",
            missing.display()
        ),
    );
    let mut child = repliqd(&daemon.config, "a", "info")
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(
        !status.success(),
        "the daemon started without its certificate"
    );
    let mut out = String::new();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!out.contains("listening"), "stdout: {out}");
    assert!(!log.contains("repliqd listening"), "log: {log}");
    assert!(log.contains("server.tls"), "the error names the key: {log}");
}
