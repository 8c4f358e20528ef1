//! At-least-once on the async handle, across real crashes: an async consumer process
//! (`queue_worker deliver`, `ReplicatedQueueImpl::recv_delivery`) is killed with SIGKILL between
//! receiving a message and acknowledging it, 100 times. Every message must be delivered at
//! least once with the bytes it was written with, the message in flight at each kill must be
//! the next one delivered, and no acknowledged message may ever be delivered again.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use repliq::QueueOptions;

/// Twin of the helper binary's message (same name and shape, hence the same fingerprint).
#[repliq::message(name = "tests.Work")]
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub producer: u32,
    pub n: u64,
    pub body: Vec<u8>,
}

fn body(producer: u32, n: u64) -> Vec<u8> {
    let len = (n % 61) as usize + (producer % 7) as usize;
    (0..len)
        .map(|i| (i as u64 ^ n ^ u64::from(producer)) as u8)
        .collect()
}

const WORKER: &str = env!("CARGO_BIN_EXE_queue_worker");

struct Consumer {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Consumer {
    fn start(dir: &std::path::Path) -> Consumer {
        let mut child = Command::new(WORKER)
            .args(["deliver", dir.to_str().unwrap(), "workers"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn queue_worker");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Consumer {
            child,
            stdin,
            lines,
        }
    }

    /// The next delivery: (seq, n), checking the message's bytes.
    fn got(&mut self) -> (u64, u64) {
        let line = self.lines.next().expect("a line").unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f.len(), f[0]), (5, "got"), "{line}");
        assert_eq!(
            f[4], "ok",
            "the message's bytes differ from what was written: {line}"
        );
        assert_eq!(f[2], "1", "{line}");
        let (seq, n) = (f[1].parse().unwrap(), f[3].parse().unwrap());
        assert_eq!(seq, n, "message n was enqueued as sequence n");
        (seq, n)
    }

    fn ack(&mut self, seq: u64) {
        writeln!(self.stdin, "ack").unwrap();
        let line = self.lines.next().expect("a line").unwrap();
        assert_eq!(line, format!("acked {seq} true"));
    }
}

#[test]
fn an_async_consumer_killed_between_receive_and_ack_loses_nothing() {
    const MESSAGES: u64 = 300;
    const KILLS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut producer = QueueOptions::new()
        .segment_size(8192)
        .capacity(1 << 20)
        .producer()
        .create::<Work>(&path)
        .unwrap();
    for n in 0..MESSAGES {
        let seq = producer
            .enqueue(&Work {
                producer: 1,
                n,
                body: body(1, n),
            })
            .unwrap();
        assert_eq!(seq, n);
    }

    // seq → how many times it was delivered; and which were acknowledged.
    let mut deliveries: BTreeMap<u64, u32> = BTreeMap::new();
    let mut acked: Vec<u64> = Vec::new();
    let mut in_flight: Option<u64> = None;
    for round in 0..KILLS {
        let mut c = Consumer::start(&path);
        // Acknowledge 0, 1 or 2 messages, then kill the consumer holding the next one.
        let acks = round % 3;
        for i in 0..=acks {
            let (seq, _) = c.got();
            *deliveries.entry(seq).or_default() += 1;
            assert!(
                !acked.contains(&seq),
                "acknowledged message {seq} delivered again"
            );
            if i == 0
                && let Some(lost) = in_flight
            {
                assert_eq!(seq, lost, "the message in flight at the kill comes first");
            }
            if i < acks {
                c.ack(seq);
                acked.push(seq);
            } else {
                c.child.kill().unwrap(); // SIGKILL, between receive and acknowledgement
                c.child.wait().unwrap();
                in_flight = Some(seq);
            }
        }
    }

    // A last consumer drains the rest, acknowledging everything.
    let mut c = Consumer::start(&path);
    loop {
        let (seq, _) = c.got();
        *deliveries.entry(seq).or_default() += 1;
        assert!(
            !acked.contains(&seq),
            "acknowledged message {seq} delivered again"
        );
        c.ack(seq);
        acked.push(seq);
        if seq == MESSAGES - 1 {
            break;
        }
    }
    drop(c.stdin);
    assert!(c.child.wait().unwrap().success());

    let missing: Vec<u64> = (0..MESSAGES)
        .filter(|s| !deliveries.contains_key(s))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(acked.len() as u64, MESSAGES, "each acknowledged once");
    // Each kill costs exactly one extra delivery: the message in flight (one message can be in
    // flight at several kills in a row).
    let total: u32 = deliveries.values().sum();
    assert_eq!(total as usize, MESSAGES as usize + KILLS);
    let redelivered = deliveries.values().filter(|&&n| n > 1).count();
    let info = repliq::inspect(&path).unwrap();
    let cursor = info.cursors.iter().find(|c| c.name == "workers").unwrap();
    assert_eq!(cursor.next_seq, MESSAGES);
    eprintln!(
        "{KILLS} kills, {MESSAGES} messages, {total} deliveries, {redelivered} messages redelivered"
    );
}
