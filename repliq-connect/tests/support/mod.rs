//! Real servers on loopback ports (redis-server, rabbitmq-server, influxd), started and killed
//! by the tests, and what the tests share.

#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `None` (with a loud message) when `redis-server` is not installed here; CI installs it
/// (`.ci/install-connectors.sh`), so there the tests always run.
pub fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "\n!!!!! SKIPPED: redis-server is not installed (run .ci/install-connectors.sh) !!!!!\n"
        );
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[cfg(feature = "redis")]
/// A redis-server with an append-only file synced on every write, so that a `kill -9` loses
/// nothing it acknowledged.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

#[cfg(feature = "redis")]
impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again (same port, same data directory) after [`Redis::kill`].
    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connects")
    }
}

#[cfg(feature = "redis")]
impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[repliq::message(name = "test.Order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: u64,
    pub item: String,
    pub qty: u32,
    pub note: Option<String>,
}

pub fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item number {id}"),
        qty: (id % 7) as u32,
        note: id.is_multiple_of(3).then(|| "x".repeat((id % 20) as usize)),
    }
}

/// Counts received ids against `0..sent`: (received, lost, duplicated).
pub fn tally(sent: u64, ids: &[u64]) -> (usize, u64, u64) {
    let mut seen = vec![0u32; sent as usize];
    let mut unexpected = 0;
    for &id in ids {
        match seen.get_mut(id as usize) {
            Some(n) => *n += 1,
            None => unexpected += 1,
        }
    }
    assert_eq!(unexpected, 0, "ids outside 0..{sent} received");
    let lost = seen.iter().filter(|&&n| n == 0).count() as u64;
    let dups = seen.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    (ids.len(), lost, dups)
}

/// Where a [`Crashing`] connector stops dead: before or after the real remote call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Before,
    After,
}

/// Wraps the real Redis sink or source and hangs forever at call `crash_at` of one operation
/// (`calls` counts that operation's calls: publishes, fetches that returned messages, or
/// acknowledgements), before or after the real call, so the test can kill the connector exactly there (an abort at
/// any other await point lets the connection's background task finish a request anyway).
pub struct Crashing<T> {
    pub inner: T,
    pub op: &'static str,
    pub at: At,
    pub crash_at: u64,
    pub calls: u64,
    pub crashed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Crashing<T> {
    async fn point(&mut self, op: &str, at: At) {
        if op == self.op && at == self.at && self.calls == self.crash_at {
            self.crashed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

impl<T: repliq_connect::SinkTarget> repliq_connect::SinkTarget for Crashing<T> {
    async fn publish(
        &mut self,
        batch: &[repliq_connect::Outgoing],
    ) -> Result<u64, repliq_connect::Failure> {
        self.calls += 1;
        self.point("publish", At::Before).await;
        let r = self.inner.publish(batch).await;
        self.point("publish", At::After).await;
        r
    }
    fn encoder(&self) -> Option<repliq_connect::Encoder> {
        self.inner.encoder()
    }
}

impl<T: repliq_connect::SourceOrigin> repliq_connect::SourceOrigin for Crashing<T> {
    type Token = T::Token;
    async fn fetch(
        &mut self,
        max: usize,
    ) -> Result<Vec<repliq_connect::Incoming<T::Token>>, repliq_connect::Failure> {
        let r = self.inner.fetch(max).await;
        if r.as_ref().is_ok_and(|v| !v.is_empty()) {
            if self.op == "fetch" {
                self.calls += 1;
            }
            self.point("fetch", At::After).await;
        }
        r
    }
    async fn ack(&mut self, tokens: &[T::Token]) -> Result<(), repliq_connect::Failure> {
        if self.op == "ack" {
            self.calls += 1;
        }
        self.point("ack", At::Before).await;
        let r = self.inner.ack(tokens).await;
        self.point("ack", At::After).await;
        r
    }
}

/// Runs a connector until it reaches its crash point, then kills it.
pub async fn crash_once<F>(
    what: &str,
    run: F,
    crashed: std::sync::Arc<std::sync::atomic::AtomicBool>,
) where
    F: std::future::Future<Output = Result<(), repliq_connect::ConnectError>> + Send + 'static,
{
    let task = tokio::spawn(run);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !crashed.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            !task.is_finished(),
            "{what}: stopped before the crash point: {:?}",
            task.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: crash point not reached"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
}

// ---- RabbitMQ (tests/rabbitmq.rs, tests/throughput.rs) ----

pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A RabbitMQ node of its own: node name, AMQP and distribution ports, data, logs and Erlang
/// cookie under the test's directory. Started through the package's inner script (the
/// `/usr/sbin` wrapper insists on the system user and /var/lib/rabbitmq).
pub struct RabbitMq {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RabbitMq {
    /// Panics naming the install script when RabbitMQ is not installed.
    pub fn start(dir: &Path, conf: &str) -> RabbitMq {
        assert!(
            Path::new(RABBITMQ_SERVER).exists(),
            "{RABBITMQ_SERVER} is missing: install RabbitMQ with .ci/install-connectors.sh"
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        let mut r = RabbitMq {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node (same name, ports and data) after [`RabbitMq::kill`]; waits until it
    /// accepts an AMQP connection. A boot that ends on its own is started again (at most three
    /// times): right after a `kill -9` the local `epmd` may still hold the node's name, and the
    /// new VM then exits at once ("name seems to be in use"). Gives up after 180 s with the tail
    /// of the broker's logs in the panic (the test's directory is gone afterwards).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut boots = 0;
        loop {
            boots += 1;
            let mut child = self.spawn_node();
            let ended = loop {
                if amqp_answers(self.port) {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            match ended {
                Some(status) if boots < 3 && Instant::now() < deadline => {
                    eprintln!(
                        "rabbitmq-server exited during boot {boots} ({status}); starting it again"
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
                _ => panic!(
                    "rabbitmq-server did not answer AMQP on port {} ({boots} boots, last: {}); its logs end with:\n{}",
                    self.port,
                    ended.map_or("still booting after 180 s".into(), |s| format!(
                        "exited, {s}"
                    )),
                    log_tail(&self.dir.join("log"), 40)
                ),
            }
        }
    }

    fn spawn_node(&self) -> Child {
        let d = &self.dir;
        std::fs::create_dir_all(d.join("log")).unwrap();
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("log").join("console.txt"))
            .expect("console file");
        Command::new(RABBITMQ_SERVER)
            .env("HOME", d)
            .env(
                "RABBITMQ_NODENAME",
                format!("repliq-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            // The script then execs the Erlang VM: the child is the broker itself.
            .env("RUNNING_UNDER_SYSTEMD", "1")
            // What the VM prints before its logger runs (a name in use, a bad config) lands
            // next to its logs, for `log_tail`.
            .stdout(console.try_clone().expect("console file"))
            .stderr(console)
            .spawn()
            .expect("rabbitmq-server starts")
    }

    /// Stops the node cleanly (SIGTERM, then waits for it): what it holds, queue definitions
    /// included, is on disk. RabbitMQ keeps definitions in Mnesia, whose log it does not sync
    /// per change: a durable queue declared moments before a `kill -9` can be gone after the
    /// restart, with everything it held (seen here: `NOT_FOUND - no queue`), whatever the
    /// broker confirmed. Tests that kill the broker declare their queues and call this first.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// `kill -9` of the Erlang VM (the script exec'd it: it is the child itself; its helper
    /// processes exit with it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether the broker answers the AMQP 0-9-1 protocol header with a method frame
/// (`connection.start`): it is up.
fn amqp_answers(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut first = [0u8; 1];
    s.write_all(b"AMQP\x00\x00\x09\x01").is_ok()
        && s.read_exact(&mut first).is_ok()
        && first[0] == 1
}

/// The last `lines` lines of every file in `dir` (a broker's log directory), for a panic message.
fn log_tail(dir: &Path, lines: usize) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("(no log directory {})", dir.display());
    };
    let mut out = String::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        out += &format!("--- {}\n", entry.path().display());
        for line in &all[all.len().saturating_sub(lines)..] {
            out += line;
            out.push('\n');
        }
    }
    out
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- InfluxDB (tests/influxdb.rs, tests/throughput.rs) ----

/// 2025-01-01T00:00:00Z in nanoseconds.
pub const T0: i64 = 1_735_689_600_000_000_000;

#[repliq::message(name = "test.Reading")]
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub id: u64,
    pub sensor: String,
    pub at_ns: i64,
    pub value: i64,
    pub unit: Option<String>,
}

pub fn reading(id: u64) -> Reading {
    Reading {
        id,
        sensor: format!("s{}", id % 4),
        at_ns: T0 + id as i64 * 1_000_000_000,
        value: id as i64 * 10,
        unit: id.is_multiple_of(2).then(|| "kPa".into()),
    }
}

pub struct Influx {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Influx {
    /// Panics naming the install script when influxd is not installed.
    pub fn start(dir: &Path) -> Influx {
        let found = Command::new("influxd")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "influxd is missing: install InfluxDB with .ci/install-connectors.sh"
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("influxdb.conf"),
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  wal-fsync-delay = \"0s\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n",
                free_port()
            ),
        )
        .unwrap();
        let mut i = Influx {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        i.restart();
        i
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("influxd")
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http(self.port, "GET", "/ping", "").starts_with("HTTP/1.0 204") {
            assert!(Instant::now() < deadline, "influxd did not answer /ping");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `q` (URL-encoded by the caller) against database `db`: the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let resp = http(
            self.port,
            "GET",
            &format!("/query?db={db}&epoch=ns&q={q}"),
            "",
        );
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.0 exchange (so the answer is never chunked): the whole response, or "" if the
/// server is not there.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

// ---- Kafka: tansu (tests/kafka.rs) ----

/// The tansu binary: `$REPLIQ_TANSU`, else where `.ci/install-kafka.sh` puts it.
pub fn tansu_binary() -> PathBuf {
    std::env::var_os("REPLIQ_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/repliq-tansu/bin/tansu")
        })
}

/// A tansu broker (a Kafka-protocol broker) of its own: a loopback port, its SQLite database
/// (`tansu.db`, WAL) and optional JSON schemas (`schemas/<topic>.json`, which make it refuse
/// records that do not validate) in the test's directory, which is its working directory (tansu
/// resolves both URLs against it).
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    schemas: bool,
    child: Option<Child>,
}

impl Tansu {
    /// Panics naming the install script when the binary is missing.
    pub fn start(dir: &Path, schemas: &[(&str, serde_json::Value)]) -> Tansu {
        let bin = tansu_binary();
        assert!(
            bin.exists(),
            "{} is missing: build tansu with .ci/install-kafka.sh (or point REPLIQ_TANSU at a tansu binary)",
            bin.display()
        );
        std::fs::create_dir_all(dir.join("schemas")).unwrap();
        for (topic, schema) in schemas {
            std::fs::write(
                dir.join("schemas").join(format!("{topic}.json")),
                schema.to_string(),
            )
            .unwrap();
        }
        let mut t = Tansu {
            port: free_port(),
            dir: dir.to_path_buf(),
            schemas: !schemas.is_empty(),
            child: None,
        };
        t.restart();
        t
    }

    /// `127.0.0.1:<port>`, for `brokers:`.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again (same port, same database) after [`Tansu::kill`]; waits until it answers
    /// a Kafka ApiVersions request.
    pub fn restart(&mut self) {
        std::fs::create_dir_all(self.dir.join("log")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log").join("tansu.txt"))
            .expect("log file");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(tansu_binary());
        cmd.current_dir(&self.dir)
            .arg("broker")
            .args(["--cluster-id", "repliq-test"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if self.schemas {
            cmd.args(["--schema-registry", "file:///schemas"]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kafka_answers(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tansu exited ({status}); its log ends with:\n{}",
                    log_tail(&self.dir.join("log"), 40)
                );
            }
            if Instant::now() >= deadline {
                // Not left running behind the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tansu did not answer on port {} within 60 s; its log ends with:\n{}",
                    self.port,
                    log_tail(&self.dir.join("log"), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Kafka broker answers an ApiVersions (v0) request on `port`.
fn kafka_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // api_key 18 (ApiVersions), version 0, correlation id 7, client id "probe".
    let mut body = vec![0, 18, 0, 0, 0, 0, 0, 7, 0, 5];
    body.extend_from_slice(b"probe");
    let mut req = (body.len() as u32).to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    let mut head = [0u8; 8];
    s.write_all(&req).is_ok() && s.read_exact(&mut head).is_ok() && head[4..8] == [0, 0, 0, 7]
}

/// Runs a sink once per crash point `(at, n)` (before or after its `n`-th publish), each time
/// with a fresh target from `make`, and kills it there: how many crashes that was.
pub async fn crash_sink_at<T, F>(
    what: &str,
    cfg: &repliq_connect::ConnectorConfig,
    stats: &std::sync::Arc<repliq_connect::Stats>,
    points: &[(At, u64)],
    make: F,
) -> u64
where
    T: repliq_connect::SinkTarget + 'static,
    F: Fn() -> T,
{
    for &(at, crash_at) in points {
        let crashed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let target = Crashing {
            inner: make(),
            op: "publish",
            at,
            crash_at,
            calls: 0,
            crashed: crashed.clone(),
        };
        let (cfg, stats) = (cfg.clone(), stats.clone());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        crash_once(
            what,
            async move { repliq_connect::run_sink(&cfg, target, &stats, shutdown).await },
            crashed,
        )
        .await;
    }
    points.len() as u64
}

/// Runs a source once per crash point `(op, at, n)` (before or after its `n`-th `fetch` that
/// returned messages, or `ack`), each time with a fresh origin from `make`, and kills it there:
/// how many crashes that was.
pub async fn crash_source_at<T, F>(
    what: &str,
    cfg: &repliq_connect::ConnectorConfig,
    stats: &std::sync::Arc<repliq_connect::Stats>,
    points: &[(&'static str, At, u64)],
    make: F,
) -> u64
where
    T: repliq_connect::SourceOrigin + 'static,
    T::Token: 'static,
    F: Fn() -> T,
{
    for &(op, at, crash_at) in points {
        let crashed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let origin = Crashing {
            inner: make(),
            op,
            at,
            crash_at,
            calls: 0,
            crashed: crashed.clone(),
        };
        let (cfg, stats) = (cfg.clone(), stats.clone());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        crash_once(
            what,
            async move { repliq_connect::run_source(&cfg, origin, &stats, shutdown).await },
            crashed,
        )
        .await;
    }
    points.len() as u64
}
