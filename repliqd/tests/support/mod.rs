//! Helpers shared by the tests that run `repliqd` as real processes on loopback.
#![allow(dead_code)] // each test file uses a subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; a small race that loopback tests accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `repliqd` command for a config file and node name, logging at `level` to stderr.
pub fn repliqd(config: &Path, node: &str, level: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repliqd"));
    cmd.arg("--config")
        .arg(config)
        .env("NODE_NAME", node)
        .env("REPLIQ_LOG", level);
    cmd
}

/// One `repliqd` node with its own persistence path and ports.
pub struct Daemon {
    pub name: String,
    pub root: PathBuf,
    pub config: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub child: Option<Child>,
}

impl Daemon {
    /// Writes the node's config (replicating to `peers`) without starting it.
    pub fn new(
        dir: &Path,
        name: &str,
        mode: &str,
        peers: &[(&str, u16)],
        grpc_port: u16,
    ) -> Daemon {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        let http_port = free_port();
        let peers: String = peers
            .iter()
            .map(|(n, port)| format!("      - name: {n}\n        address: 127.0.0.1:{port}\n"))
            .collect();
        let peers = if peers.is_empty() {
            " []\n".to_string()
        } else {
            format!("\n{peers}")
        };
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "replication:\n  mode: {mode}\n  discovery:\n    method: static\n    peers:{peers}\
                 queue:\n  capacity: 1000000\n  persistence:\n    path: {}\n\
                 server:\n  grpc_listen: 127.0.0.1:{grpc_port}\n  http_listen: 127.0.0.1:{http_port}\n  \
                 shutdown_grace_ms: 2000\n",
                root.display()
            ),
        )
        .unwrap();
        Daemon {
            name: name.to_owned(),
            root,
            config,
            grpc_port,
            http_port,
            child: None,
        }
    }

    /// A full mesh of `names` in `mode`, not started.
    pub fn cluster(dir: &Path, names: &[&str], mode: &str) -> Vec<Daemon> {
        let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let peers: Vec<(&str, u16)> = names
                    .iter()
                    .zip(&ports)
                    .filter(|(n, _)| *n != name)
                    .map(|(n, p)| (*n, *p))
                    .collect();
                Daemon::new(dir, name, mode, &peers, ports[i])
            })
            .collect()
    }

    /// Starts the process and waits for its "listening" line.
    pub fn start(&mut self) {
        let mut child = repliqd(&self.config, &self.name, "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("repliqd listening"), "{line:?}");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// `name=127.0.0.1:port`, as `configure_replication` takes it.
    pub fn secondary(&self) -> String {
        format!("{}=127.0.0.1:{}", self.name, self.grpc_port)
    }

    pub fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
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

/// The value of the sample `line_prefix` (metric name and labels) in an OpenMetrics body.
pub fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The segment files of a queue, sorted by name, with their bytes.
pub fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// How many records the queue at `dir` holds (0 if it does not exist yet).
pub fn held(dir: &Path) -> u64 {
    repliq::inspect(dir)
        .ok()
        .and_then(|i| i.last_seq)
        .map_or(0, |s| s + 1)
}

/// Polls `f` every 50 ms until it holds; fails after 120 s (a bound, not a speed goal).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
