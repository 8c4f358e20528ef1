//! A real `redis-server` on a loopback port, started and killed by the tests.

#![allow(dead_code)]

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

/// A redis-server with an append-only file synced on every write, so that a `kill -9` loses
/// nothing it acknowledged.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

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
