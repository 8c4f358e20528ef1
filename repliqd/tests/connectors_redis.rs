//! The daemon's `connectors:` against a real `redis-server`: a Redis Streams sink and source run
//! inside `repliqd`, which is killed with SIGKILL mid-stream (any instruction) and restarted;
//! every message crosses in both directions, none is lost, the sink duplicates nothing (its
//! entry IDs are the queue sequence) and the source at most one batch per kill.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use repliq::{JournalQueue, QueueOptions, StartAt};
use support::{Daemon, Order, free_port, order, wait_until};

const N: u64 = 5_000;
const BATCH: u64 = 100;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(dir: &Path) -> Option<Redis> {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let child = match Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => {
                eprintln!(
                    "\n!!!!! SKIPPED: redis-server is not installed (run .ci/install-connectors.sh) !!!!!\n"
                );
                return None;
            }
        };
        let r = Redis { port, child };
        wait_until("redis-server answers", || {
            r.conn_opt()
                .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
        });
        Some(r)
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
    fn conn_opt(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .ok()
    }
    fn conn(&self) -> redis::Connection {
        self.conn_opt().expect("connects")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xlen(c: &mut redis::Connection, stream: &str) -> u64 {
    redis::cmd("XLEN").arg(stream).query(c).unwrap()
}

/// Counts `ids` against `0..N`: (lost, duplicated).
fn tally(ids: &[u64]) -> (u64, u64) {
    let mut seen = vec![0u64; N as usize];
    for &id in ids {
        seen[id as usize] += 1;
    }
    (
        seen.iter().filter(|&&n| n == 0).count() as u64,
        seen.iter().map(|&n| n.saturating_sub(1)).sum(),
    )
}

#[test]
fn sink_and_source_in_the_daemon_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = Redis::start(&dir.path().join("redis")) else {
        return;
    };
    let mut daemon = Daemon::new(dir.path(), "a", "asynchronous", &[], free_port());
    let mut orders = JournalQueue::<Order>::new(daemon.root.join("orders"), 1 << 20).unwrap();
    drop(JournalQueue::<Order>::new(daemon.root.join("inbox"), 1 << 20).unwrap());
    let mut config = std::fs::read_to_string(&daemon.config).unwrap();
    config.push_str(&format!(
        "connectors:\n\
         \x20 - name: out\n    queue: orders\n    batch: {BATCH}\n    dead_letter: orders.dead\n\
         \x20   redis_sink: {{url: \"{url}\", stream: orders}}\n\
         \x20 - name: in\n    queue: inbox\n    batch: {BATCH}\n    dead_letter: inbox.dead\n\
         \x20   redis_source: {{url: \"{url}\", stream: incoming, group: repliq, block_ms: 200}}\n",
        url = server.url()
    ));
    std::fs::write(&daemon.config, config).unwrap();

    // Upstream messages for the source (entry IDs make these writes idempotent) and queue
    // messages for the sink, both written while the daemon runs and gets killed.
    let mut conn = server.conn();
    let started = Instant::now();
    daemon.start();
    let mut kills = 0;
    let mut next = 0;
    let mut inbox = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<Order>(daemon.root.join("inbox"))
        .unwrap();
    let mut received = Vec::new();
    while next < N {
        let end = (next + 500).min(N);
        // Where both directions stand before this chunk: a kill below waits until part of
        // the chunk crossed each way, so the daemon dies while both are moving.
        let (s0, r0) = (
            xlen(&mut conn, "orders"),
            support::held(&daemon.root.join("inbox")),
        );
        for i in next..end {
            orders.enqueue(&order(i)).unwrap();
            let _: String = redis::cmd("XADD")
                .arg("incoming")
                .arg(format!("{}-1", i + 1))
                .arg("data")
                .arg(serde_json::to_vec(&order(i)).unwrap())
                .query(&mut conn)
                .unwrap();
        }
        next = end;
        if next % 1500 == 0 {
            wait_until("both directions to move", || {
                xlen(&mut conn, "orders") > s0 && support::held(&daemon.root.join("inbox")) > r0
            });
            daemon.kill9();
            kills += 1;
            daemon.start();
        }
    }
    wait_until("everything across", || {
        while let Some(o) = inbox.dequeue().unwrap() {
            assert_eq!(o, order(o.id), "the message crossed intact");
            received.push(o.id);
        }
        let mut distinct = received.clone();
        distinct.sort_unstable();
        distinct.dedup();
        xlen(&mut conn, "orders") >= N && distinct.len() as u64 >= N
    });
    daemon.kill9();
    let elapsed = started.elapsed();

    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let sunk: Vec<u64> = reply
        .ids
        .iter()
        .map(|e| {
            let data: Vec<u8> = e.get("data").unwrap();
            let o: Order = serde_json::from_slice(&data).unwrap();
            assert_eq!(o, order(o.id));
            assert_eq!(e.id, format!("{}-1", o.id), "the dedup ID is the sequence");
            o.id
        })
        .collect();
    let (sink_lost, sink_dups) = tally(&sunk);
    let (source_lost, source_dups) = tally(&received);
    println!(
        "repliqd redis sink: sent {N}, received {}, lost {sink_lost}, duplicated {sink_dups}; \
         redis source: sent {N}, received {}, lost {source_lost}, duplicated {source_dups} \
         (daemon SIGKILLed {kills}x, {:.1} s)",
        sunk.len(),
        received.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!((sink_lost, sink_dups), (0, 0));
    assert_eq!(source_lost, 0);
    assert!(
        source_dups <= kills * BATCH,
        "{source_dups} duplicates exceed a batch per kill"
    );
    assert!(
        !daemon.root.join("orders.dead").join("queue.meta").exists() || {
            let dead = repliq::inspect(daemon.root.join("orders.dead")).unwrap();
            dead.last_seq.is_none()
        }
    );
}
