//! Three `repliqd` processes on loopback replicate a queue written by a producer on the first
//! node: every replica's segment files end up byte-identical to the primary's, a consumer on a
//! replica reads every message in place, and a replica killed with SIGKILL mid-stream catches up
//! after a restart with no gap and no duplicate.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions, StartAt, Tailer};

#[repliq::message(name = "test.Tick")]
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    seq: u64,
    symbol: String,
    price: i64,
}

fn tick(n: u64) -> Tick {
    Tick {
        seq: n,
        symbol: format!("SYM{}", n % 97),
        price: (n as i64) * 3 - 1000,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    name: String,
    root: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_repliqd"))
            .arg("--config")
            .arg(&self.config)
            .env("NODE_NAME", &self.name)
            .env("REPLIQ_LOG", "warn")
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

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn cluster(dir: &Path, mode: &str) -> Vec<Node> {
    let names = ["a", "b", "c"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let root = dir.join(name);
            let peers: String = names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, n)| format!("      - name: {n}\n        address: 127.0.0.1:{}\n", ports[j].0))
                .collect();
            let text = format!(
                "replication:\n  mode: {mode}\n  discovery:\n    method: static\n    peers:\n{peers}\
                 queue:\n  capacity: 1000000\n  persistence:\n    path: {}\n\
                 server:\n  grpc_listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:{}\n  shutdown_grace_ms: 3000\n",
                root.display(),
                ports[i].0,
                ports[i].1
            );
            let config = dir.join(format!("{name}.yaml"));
            std::fs::write(&config, text).unwrap();
            Node {
                name: name.to_string(),
                root,
                config,
                child: None,
            }
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

/// Waits until the queue at `dir` holds `count` records (bounded: 120 s).
fn wait_for(dir: &Path, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let held = repliq::inspect(dir)
            .ok()
            .and_then(|i| i.last_seq)
            .map_or(0, |s| s + 1);
        if held >= count {
            assert_eq!(held, count, "{} holds more than was written", dir.display());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {held} of {count} records after 120 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn produce(q: &mut JournalQueue<Tick>, range: std::ops::Range<u64>) {
    for n in range {
        q.enqueue(&tick(n)).unwrap();
    }
}

#[test]
fn three_daemons_replicate_byte_identical_and_resume_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), "asynchronous");
    for n in &mut nodes {
        std::fs::create_dir_all(&n.root).unwrap();
        n.start();
    }
    let primary_dir = nodes[0].root.join("ticks");
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .create::<Tick>(&primary_dir)
        .unwrap();
    produce(&mut q, 0..100_000);
    for n in &nodes[1..] {
        wait_for(&n.root.join("ticks"), 100_000);
    }
    let primary = segment_files(&primary_dir);
    assert!(
        primary.len() > 2,
        "the journal rolled over several segments"
    );
    for n in &nodes[1..] {
        assert!(
            segment_files(&n.root.join("ticks")) == primary,
            "{}'s segment files differ from the primary's",
            n.name
        );
    }

    // A consumer on a replica reads every message in place (validated zero-copy access).
    let mut tailer = Tailer::<Tick>::open(nodes[1].root.join("ticks"), StartAt::Earliest).unwrap();
    let mut expected = 0u64;
    while let Some(ok) = tailer
        .read(|seq, t| {
            seq == t.seq.to_native() && t.seq == expected && t.symbol == tick(expected).symbol
        })
        .unwrap()
    {
        assert!(ok, "record {expected} differs");
        expected += 1;
    }
    assert_eq!(expected, 100_000);

    // Kill -9 replica c mid-stream, keep writing, restart it: it resumes without gap or duplicate.
    produce(&mut q, 100_000..130_000);
    nodes[2].kill9();
    produce(&mut q, 130_000..160_000);
    nodes[2].start();
    for n in &nodes[1..] {
        wait_for(&n.root.join("ticks"), 160_000);
    }
    let primary = segment_files(&primary_dir);
    for n in &nodes[1..] {
        assert!(
            segment_files(&n.root.join("ticks")) == primary,
            "{}'s segment files differ from the primary's after the restart",
            n.name
        );
    }
    let mut c = QueueOptions::new()
        .consumer("audit")
        .open::<Tick>(nodes[2].root.join("ticks"))
        .unwrap();
    for n in 0..160_000 {
        assert_eq!(c.dequeue().unwrap(), Some(tick(n)));
    }
    assert_eq!(c.dequeue().unwrap(), None);
}
