//! `repliqd` as a real process: configuration errors name the key and exit non-zero; a running
//! daemon serves `/healthz`, `/readyz` and `/metrics` (with the queues under its path) and exits 0
//! on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use repliq::PersistentQueue;

#[repliq::message(name = "test.Ping")]
#[derive(Debug, PartialEq)]
struct Ping(u64);

fn repliqd(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repliqd"));
    cmd.arg("--config")
        .arg(config)
        .env("NODE_NAME", "node-a")
        .env("REPLIQ_LOG", "warn");
    cmd
}

fn config_text(root: &Path, mode: &str, method: &str) -> String {
    format!(
        "replication:
  mode: {mode}
  discovery:
    method: {method}
    label_selector: app=repliq
    peers: []
queue:
  capacity: 1000
  persistence:
    path: {}
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  shutdown_grace_ms: 2000
",
        root.display()
    )
}

/// A minimal HTTP/1.1 GET: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

struct Daemon {
    child: Child,
    http: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &Path) -> Daemon {
    let mut child = repliqd(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "repliqd listening grpc=ADDR http=ADDR"
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    Daemon { child, http }
}

#[test]
fn invalid_config_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            config_text(dir.path(), "eventually", "static"),
            "replication.mode: unknown replication mode `eventually`",
        ),
        (
            config_text(dir.path(), "synchronous", "kubernetes"),
            "replication.discovery.method: `kubernetes` discovery is not available",
        ),
        (
            config_text(dir.path(), "synchronous", "static")
                .replace("capacity: 1000", "capacity: 0"),
            "queue.capacity: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        let out = repliqd(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "exit code");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "stderr {stderr:?} lacks {expected:?}"
        );
    }
    let out = repliqd(&dir.path().join("missing.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading config"));
}

#[test]
fn serves_health_readiness_and_metrics_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("queues");
    // A queue on the node, with three messages and one consumed.
    let mut q = repliq::JournalQueue::<Ping>::new(root.join("pings"), 100).unwrap();
    for i in 0..3 {
        q.enqueue(&Ping(i)).unwrap();
    }
    assert_eq!(q.dequeue().unwrap(), Some(Ping(0)));

    let config = dir.path().join("config.yaml");
    std::fs::write(&config, config_text(&root, "asynchronous", "static")).unwrap();
    let mut daemon = start(&config);

    assert_eq!(get(daemon.http, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(daemon.http, "/readyz"), (200, "ready\n".into()));
    let (status, body) = get(daemon.http, "/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"repliq_enqueued_records_total{queue="pings"} 3"#,
        r#"repliq_dequeued_records_total{queue="pings",cursor="default"} 1"#,
        r#"repliq_backlog_records{queue="pings",cursor="default"} 2"#,
        r#"repliq_segments{queue="pings"} 1"#,
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    assert_eq!(get(daemon.http, "/nope").0, 404);

    // SIGTERM: a graceful stop with exit code 0.
    // SAFETY: plain FFI call with a valid pid of our own child and a valid signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
