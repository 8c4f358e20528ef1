//! Helpers shared by the tests that run `repliqd` as real processes on loopback.
#![allow(dead_code)] // each test file uses a subset

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod small_fs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released), never one this process handed out before: the
/// kernel may offer a released port again, and two nodes of one test given the same port fail to
/// start. (Another process taking the port in between is a small race loopback tests accept.)
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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

    /// The node's log file (every start appends to it); printed when a test fails.
    pub fn log_path(&self) -> PathBuf {
        self.config.with_extension("log")
    }

    /// Starts the process and waits for its "listening" line. It logs at `info` (or
    /// `REPLIQ_TEST_LOG`) to [`Daemon::log_path`].
    pub fn start(&mut self) {
        self.start_with(|_| {});
    }

    /// [`Daemon::start`] with more arguments or environment variables set by `more`.
    pub fn start_with(&mut self, more: impl FnOnce(&mut Command)) {
        let level = std::env::var("REPLIQ_TEST_LOG").unwrap_or_else(|_| "info".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = repliqd(&self.config, &self.name, &level);
        more(&mut cmd);
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
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
        if std::thread::panicking() {
            // The test failed: what the node logged is the first thing to read.
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(60);
            eprintln!("---- last log lines of node {} ----", self.name);
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
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

/// Sends `sig` (e.g. `SIGSTOP`, `SIGCONT`) to the daemon's process.
pub fn signal(d: &Daemon, sig: libc::c_int) {
    let pid = d.child.as_ref().expect("running").id() as libc::pid_t;
    // SAFETY: kill(2) with the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
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

/// The message of the producer processes.
#[repliq::message(name = "test.FailoverOrder")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: u64,
    pub body: Vec<u8>,
}

/// The body of order `id` (its length varies, so records vary in size).
pub fn order(id: u64) -> Order {
    Order {
        id,
        body: (0..(id % 97) as u8).map(|b| b ^ id as u8).collect(),
    }
}

const CHILD_DIR: &str = "REPLIQ_TEST_PRODUCER_DIR";

/// The body of the producer process: each test file that spawns producers has an ignored
/// `#[test] fn producer_child() { support::producer_child() }` (ignored, so that it is not
/// counted as a test that passed), which does nothing unless the test binary was started by
/// [`Producer::spawn`] (with `--ignored`). It creates (or opens) the queue with
/// `JournalQueue::new` and enqueues orders `base..base+count` for at most `secs` seconds, one line
/// on stdout per outcome: `ACK seq id` (enqueue returned Ok), `TIMEOUT seq id` (AckTimeout: written
/// locally, not acknowledged), `FENCED id`, `ERR id message`; `DONE` at the end.
pub fn producer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let num = |k: &str| -> u64 { std::env::var(k).unwrap().parse().unwrap() };
    let (base, count, secs) = (
        num("REPLIQ_TEST_PRODUCER_BASE"),
        num("REPLIQ_TEST_PRODUCER_COUNT"),
        num("REPLIQ_TEST_PRODUCER_SECS"),
    );
    let mut out = std::io::stdout().lock();
    // libtest printed "test producer_child ... " without a line end.
    writeln!(out).unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut q = repliq::JournalQueue::<Order>::new(&dir, 10_000_000).unwrap();
    for id in base..base + count {
        if Instant::now() > deadline {
            break;
        }
        match q.enqueue(&order(id)) {
            Ok(seq) => writeln!(out, "ACK {seq} {id}").unwrap(),
            Err(repliq::QueueError::Replication(repliq::ReplicationError::AckTimeout {
                seq,
                ..
            })) => writeln!(out, "TIMEOUT {seq} {id}").unwrap(),
            Err(repliq::QueueError::Replication(repliq::ReplicationError::Fenced { .. })) => {
                writeln!(out, "FENCED {id}").unwrap();
                break;
            }
            // Nothing written: the node's lease does not allow writes now (it may again).
            Err(repliq::QueueError::Replication(repliq::ReplicationError::LeaseExpired {
                ..
            })) => {
                writeln!(out, "LEASE {id}").unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                writeln!(out, "ERR {id} {e}").unwrap();
                break;
            }
        }
        out.flush().unwrap();
    }
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
}

/// A producer process (this test binary re-executed, see [`producer_child`]), with its output
/// collected by a thread.
pub struct Producer {
    child: Option<Child>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    pub fn spawn(dir: &Path, base: u64, count: u64, secs: u64) -> Producer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "producer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env("REPLIQ_TEST_PRODUCER_BASE", base.to_string())
            .env("REPLIQ_TEST_PRODUCER_COUNT", count.to_string())
            .env("REPLIQ_TEST_PRODUCER_SECS", secs.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Producer {
            child: Some(child),
            lines,
            reader: Some(reader),
        }
    }

    /// (seq, id) of every enqueue that returned Ok so far.
    pub fn acked(&self) -> Vec<(u64, u64)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("ACK ")?.split(' ');
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Every line with `prefix`.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Every line it printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill(2) with the pid of a child this test started and has not reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// SIGKILL, then collect what it printed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().unwrap();
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
    }

    /// Waits for it to exit (bounded by its own time limit plus a margin).
    pub fn wait(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        if let Some(mut c) = self.child.take() {
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One node `a` serving remote clients (`server.clients`), asynchronous, no peers, started, with
/// queue `orders` holding orders `0..n`.
pub fn serving_clients(dir: &Path, n: u64) -> Daemon {
    let mut a = Daemon::new(dir, "a", "asynchronous", &[], free_port());
    let mut config = std::fs::read_to_string(&a.config).unwrap();
    assert!(config.ends_with("shutdown_grace_ms: 2000\n"), "{config}");
    config.push_str("  clients: true\n");
    std::fs::write(&a.config, config).unwrap();
    a.start();
    let mut q = repliq::JournalQueue::<Order>::new(a.root.join("orders"), 1_000_000).unwrap();
    for id in 0..n {
        q.enqueue(&order(id)).unwrap();
    }
    a
}

/// Every order in the queue at `dir`, in sequence order, read through a temporary cursor.
pub fn all_orders(dir: &Path) -> Vec<Order> {
    let mut q = repliq::QueueOptions::new()
        .consumer("check")
        .open::<Order>(dir)
        .unwrap();
    let mut out = Vec::new();
    while let Some(o) = q.dequeue().unwrap() {
        out.push(o);
    }
    q.remove_consumer("check");
    out
}

/// `repliq promote DIR`: the new state.
pub fn promote(dir: &Path) -> repliq::replication::ReplicationState {
    let out = Command::new(env!("CARGO_BIN_EXE_repliq"))
        .arg("promote")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
