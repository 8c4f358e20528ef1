//! A real `redis-server` on a loopback port, started and killed by the tests.

#![allow(dead_code, unused_imports)]

use std::net::TcpListener;
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

/// Wraps the real Redis sink or source and hangs forever at call `crash_at` of one operation,
/// before or after the real call, so the test can kill the connector exactly there (an abort at
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
}

impl<T: repliq_connect::SourceOrigin> repliq_connect::SourceOrigin for Crashing<T> {
    type Token = T::Token;
    async fn fetch(
        &mut self,
        max: usize,
    ) -> Result<Vec<repliq_connect::Incoming<T::Token>>, repliq_connect::Failure> {
        let r = self.inner.fetch(max).await;
        if r.as_ref().is_ok_and(|v| !v.is_empty()) {
            self.calls += 1;
            self.point("fetch", At::After).await;
        }
        r
    }
    async fn ack(&mut self, tokens: &[T::Token]) -> Result<(), repliq_connect::Failure> {
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
