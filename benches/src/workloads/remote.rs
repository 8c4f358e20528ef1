//! repliq's remote produce: `RemoteProducer<BenchMsg>`s writing through the client protocol
//! (gRPC on loopback) to a real `repliqd` that the harness starts: one node, asynchronous, no
//! replicas, so a batch is acknowledged after the node's local commit. The daemon is the
//! `repliqd` binary next to the harness's own executable (same profile: `cargo build --release
//! -p repliqd` for a release harness); without it the rows are skipped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use repliq::client::{ClientError, Refused, RemoteProducer};

use super::{Outcome, PacedLoad, ProduceLoad, ProducerRun, cut_note, produce_in_parallel};
use crate::BoxResult;
use crate::clock::{Pacer, deadline, now_ns};
use crate::msg::BenchMsg;
use crate::servers::free_port;
use crate::stats::Recorder;

/// Records per batch of the throughput rows.
pub const BATCH: usize = 256;

/// How long a producer retries a queue the daemon has not picked up yet.
const QUEUE_PATIENCE: Duration = Duration::from_secs(10);

/// A running `repliqd` serving remote clients; killed (and its directory removed) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    queues: u64,
    /// `repliqd --version`, for the report.
    pub version: String,
}

/// The `repliqd` binary next to this executable, or why there is none.
fn binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = exe
        .parent()
        .map(|d| d.join("repliqd"))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "repliqd not found next to {} (build it: cargo build -p repliqd, with \
                 --release for a release harness)",
                exe.display()
            )
        })?;
    Ok(bin)
}

impl Daemon {
    /// Starts `repliqd` on loopback ports with a temporary persistence path and waits (≤ 10 s)
    /// for its "listening" line.
    pub fn start() -> Result<Self, String> {
        let bin = binary()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let grpc = free_port().map_err(|e| e.to_string())?;
        let http = free_port().map_err(|e| e.to_string())?;
        let root = dir.path().join("queues");
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let config = dir.path().join("repliqd.yaml");
        std::fs::write(
            &config,
            format!(
                "replication:\n  mode: asynchronous\n  discovery:\n    method: static\n    peers: []\n\
                 queue:\n  capacity: 1048576\n  persistence:\n    path: {}\n\
                 server:\n  grpc_listen: 127.0.0.1:{grpc}\n  http_listen: 127.0.0.1:{http}\n  \
                 clients: true\n",
                root.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("repliqd.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("NODE_NAME", "bench")
            .env("REPLIQ_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        // The first stdout line says it listens; read it on a thread so a hung start times out.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if !line.starts_with("repliqd listening") {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("repliqd.log")).unwrap_or_default();
            return Err(format!(
                "repliqd did not start: {:?} {}",
                line.trim(),
                log.lines().last().unwrap_or_default()
            ));
        }
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Daemon {
            child,
            dir,
            addr: format!("127.0.0.1:{grpc}"),
            queues: 0,
            version,
        })
    }

    /// Creates a new queue of [`BenchMsg`] for `count` messages in the daemon's persistence
    /// path (the daemon picks it up); returns its name.
    fn new_queue(&mut self, count: u64) -> BoxResult<String> {
        self.queues += 1;
        let name = format!("remote{}", self.queues);
        let path = self.dir.path().join("queues").join(&name);
        repliq::JournalQueue::<BenchMsg>::new(path, count.saturating_mul(2).saturating_add(1024))?;
        Ok(name)
    }

    /// Connects producer `id` to `queue`, retrying while the daemon has not picked it up.
    fn connect(
        &self,
        rt: &tokio::runtime::Runtime,
        queue: &str,
        id: &str,
    ) -> BoxResult<RemoteProducer<BenchMsg>> {
        let give_up = std::time::Instant::now() + QUEUE_PATIENCE;
        loop {
            match rt.block_on(RemoteProducer::<BenchMsg>::connect(
                &self.addr, queue, id, 1,
            )) {
                Ok(p) => return Ok(p),
                Err(ClientError::Refused {
                    reason: Refused::NotFound,
                    ..
                }) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Remote produce throughput: `load.producers` producers (own ids and connections) send
    /// batches of [`BATCH`] and wait for each batch's acknowledgement; timed until the last.
    pub fn throughput(&mut self, load: &ProduceLoad) -> BoxResult<Outcome> {
        let queue = self.new_queue(load.count)?;
        let (share, end) = (load.share(), deadline(load.secs) + 1_000_000);
        produce_in_parallel(
            load,
            |i| {
                let rt = runtime()?;
                let p = self.connect(&rt, &queue, &format!("bench-{i}"))?;
                Ok((rt, p))
            },
            |(rt, mut p)| {
                rt.block_on(async {
                    let mut batch = vec![BenchMsg::of_size(load.size); BATCH];
                    let start = now_ns();
                    let mut sent = 0u64;
                    while sent < share {
                        let n = (share - sent).min(BATCH as u64) as usize;
                        for (k, m) in batch[..n].iter_mut().enumerate() {
                            m.ts = now_ns();
                            m.seq = sent + k as u64;
                        }
                        p.send_batch(&batch[..n]).await?;
                        sent += n as u64;
                        if now_ns() > end {
                            break;
                        }
                    }
                    BoxResult::Ok(ProducerRun {
                        sent,
                        start_ns: start,
                        last_ns: now_ns(),
                    })
                })
            },
        )
    }

    /// Produce → acknowledge latency: one producer sends batches of one, paced at `load.rate`.
    pub fn latency(&mut self, load: &PacedLoad) -> BoxResult<Outcome> {
        let queue = self.new_queue(load.count)?;
        let rt = runtime()?;
        let mut p = self.connect(&rt, &queue, "bench-latency")?;
        rt.block_on(async {
            let pacer = Pacer::new(load.rate);
            let end = deadline(load.secs) + 1_000_000;
            let mut m = BenchMsg::of_size(load.size);
            let mut rec = Recorder::new();
            let mut sent = 0;
            while sent < load.count {
                let t = pacer.wait(sent);
                m.ts = t;
                m.seq = sent;
                p.send(&m).await?;
                rec.record(now_ns().saturating_sub(t));
                sent += 1;
                if sent.is_multiple_of(64) && now_ns() > end {
                    break;
                }
            }
            Ok(Outcome {
                latency: Some(rec.summary()),
                sent,
                note: cut_note(sent, load.count),
                ..Outcome::default()
            })
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> BoxResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
