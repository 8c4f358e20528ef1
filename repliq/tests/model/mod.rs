//! A model-based check of a queue, in the style of sled's: arbitrary sequences of operations run
//! against a real queue on disk and against a model (a `VecDeque` per consumer), compared after
//! every step. Shared by the property test `repliq/tests/queue_model.rs` (proptest, under
//! `cargo test`) and the cargo-fuzz target `fuzz/fuzz_targets/queue_model.rs`.
//!
//! The operations: `Append` a message (any length up to the maximum, which the model mirrors
//! only if `enqueue` said `Ok`); `Read` the next message of a consumer without consuming it
//! (`peek`); `Ack` it (`dequeue`); `Reopen` (drop every handle and open the queue again);
//! `Crash` (the files as a SIGKILL leaves them: copied byte for byte while the handles are still
//! open, as the page cache holds them, and the queue opened from the copy; the old handles are
//! then dropped on the original, which is no longer used); `Roll` (a message of the maximum
//! size, which fills segments of 4 KiB quickly: rolls happen every few appends anyway).
//!
//! Checked after each step: a peeked or dequeued message is the model's next one for that
//! consumer (and `None` exactly when the model has none); `enqueue` answers `Full` exactly when
//! the slowest consumer's backlog is at the capacity, and never another error; after every
//! reopen and at the end, a `Tailer` from the start reads every acknowledged message once, in
//! order, with contiguous sequence numbers, and nothing else.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use repliq::{JournalQueue, QueueError, QueueOptions, StartAt, Tailer};

/// The message: its index among acknowledged appends, and a body.
#[repliq::message(name = "model.Msg")]
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub n: u64,
    pub body: Vec<u8>,
}

/// Consumers of the model queue, by name.
pub const CONSUMERS: [&str; 2] = ["c0", "c1"];
/// The queue's capacity (backlog bound of the slowest consumer).
pub const CAPACITY: u64 = 24;
/// Segment size: the smallest allowed, so that rolls are frequent.
pub const SEGMENT: u64 = 4096;
/// Largest serialized message.
pub const MAX_MESSAGE: u32 = 1024;
/// Largest body `Append` asks for; serialization adds a few bytes, so the largest ones are
/// refused as too large (which the model expects: `Serialization`, nothing written).
pub const MAX_BODY: usize = 1024;

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Append { len: u16, byte: u8 },
    Read { consumer: u8 },
    Ack { consumer: u8 },
    Reopen,
    Crash,
    Roll,
}

/// Decodes fuzzer bytes into operations: two bytes per step at most.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut it = bytes.iter().copied();
    while let Some(b) = it.next() {
        let op = match b % 16 {
            0..=5 => {
                let arg = it.next().unwrap_or(0);
                // Mostly small bodies; 1 in 8 up to the maximum.
                let len = if b & 0x80 != 0 {
                    u16::from(arg) * 4 + u16::from(b >> 4 & 3)
                } else {
                    u16::from(arg % 64)
                };
                Op::Append {
                    len: len.min(MAX_BODY as u16),
                    byte: b,
                }
            }
            6..=8 => Op::Read {
                consumer: b >> 4 & 1,
            },
            9..=12 => Op::Ack {
                consumer: b >> 4 & 1,
            },
            13 => Op::Reopen,
            14 => Op::Crash,
            _ => Op::Roll,
        };
        ops.push(op);
    }
    ops
}

struct Handles {
    producer: JournalQueue<Msg>,
    consumers: Vec<JournalQueue<Msg>>,
}

impl Handles {
    /// Waits for the producer's background preparation of the next segment file, so that no
    /// thread of this run touches its directory after its handles are gone (the thread holds
    /// the journal and would otherwise outlive the run: a fuzzer's leak check sees its
    /// allocations as leaked).
    fn settle(&self) {
        for q in std::iter::once(&self.producer).chain(&self.consumers) {
            q.warm_up(std::time::Duration::from_secs(10));
        }
    }
}

fn open(dir: &Path) -> Result<Handles, String> {
    let producer = QueueOptions::new()
        .producer()
        .open::<Msg>(dir)
        .map_err(|e| format!("opening the producer: {e}"))?;
    let consumers = CONSUMERS
        .iter()
        .map(|c| {
            QueueOptions::new()
                .consumer(*c)
                .open::<Msg>(dir)
                .map_err(|e| format!("opening consumer {c}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Handles {
        producer,
        consumers,
    })
}

fn create(dir: &Path) -> Result<Handles, String> {
    let producer = QueueOptions::new()
        .capacity(CAPACITY)
        .segment_size(SEGMENT)
        .max_message_size(MAX_MESSAGE)
        .producer()
        .create::<Msg>(dir)
        .map_err(|e| format!("creating the queue: {e}"))?;
    producer.warm_up(std::time::Duration::from_secs(10));
    drop(producer);
    open(dir)
}

/// Copies every file of `from` (the queue directory, one level deep) into `to`, as the page
/// cache holds them now.
fn snapshot(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("listing {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", from.display()))?;
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_file() {
            let name = entry.file_name();
            let bytes = match std::fs::read(entry.path()) {
                Ok(bytes) => bytes,
                // The producer's background thread prepares the next segment in `.tmp-*` and
                // `.spare-*` files: one renamed or removed since the listing is simply not in
                // this snapshot (a crash before it was made).
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && [".tmp-", ".spare-"]
                            .iter()
                            .any(|p| name.to_string_lossy().starts_with(p)) =>
                {
                    continue;
                }
                Err(e) => return Err(format!("reading {}: {e}", entry.path().display())),
            };
            std::fs::write(to.join(name), bytes)
                .map_err(|e| format!("writing a copy of {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Every acknowledged message, read by a tailer from the start: exactly `log`, in order.
fn check_all(dir: &Path, log: &[Msg]) -> Result<(), String> {
    let mut tailer = Tailer::<Msg>::open(dir, StartAt::Earliest)
        .map_err(|e| format!("opening a tailer: {e}"))?;
    for (i, want) in log.iter().enumerate() {
        let seq = tailer.seq();
        if seq != i as u64 {
            return Err(format!("the tailer is at seq {seq} before message {i}"));
        }
        match tailer.try_next() {
            Ok(Some(got)) if got == *want => {}
            Ok(Some(got)) => {
                return Err(format!(
                    "message {i}: read n={} ({} bytes), acknowledged n={} ({} bytes)",
                    got.n,
                    got.body.len(),
                    want.n,
                    want.body.len()
                ));
            }
            Ok(None) => return Err(format!("message {i} of {} is missing", log.len())),
            Err(e) => return Err(format!("reading message {i}: {e}")),
        }
    }
    match tailer.try_next() {
        Ok(None) => Ok(()),
        Ok(Some(extra)) => Err(format!(
            "an unacknowledged message n={} after the last",
            extra.n
        )),
        Err(e) => Err(format!("reading past the last message: {e}")),
    }
}

/// Runs `ops` on a queue created in the empty directory `base`; `Err` says which step broke
/// which invariant.
pub fn run(base: &Path, ops: &[Op]) -> Result<(), String> {
    let mut generation = 0u32;
    let mut dir: PathBuf = base.join("q0");
    let mut handles = create(&dir)?;
    let mut log: Vec<Msg> = Vec::new();
    let mut pending: Vec<VecDeque<Msg>> = vec![VecDeque::new(); CONSUMERS.len()];

    for (step, op) in ops.iter().enumerate() {
        let at = |what: String| format!("step {step} ({op:?}): {what}");
        match *op {
            Op::Append { len, byte } => {
                let msg = Msg {
                    n: log.len() as u64,
                    body: vec![byte; usize::from(len)],
                };
                append(&mut handles, &mut log, &mut pending, msg).map_err(at)?;
            }
            Op::Roll => {
                // The largest message that fits: a few bytes of framing below the maximum.
                let msg = Msg {
                    n: log.len() as u64,
                    body: vec![0xA5; MAX_MESSAGE as usize - 32],
                };
                append(&mut handles, &mut log, &mut pending, msg).map_err(at)?;
            }
            Op::Read { consumer } => {
                let c = usize::from(consumer) % CONSUMERS.len();
                let got = handles.consumers[c]
                    .peek()
                    .map_err(|e| at(format!("peek: {e}")))?
                    .map(|g| (g.n.to_native(), g.body.to_vec()));
                let want = pending[c].front().map(|m| (m.n, m.body.clone()));
                if got != want {
                    return Err(at(format!(
                        "{} peeked n={:?}, the model says n={:?}",
                        CONSUMERS[c],
                        got.map(|g| g.0),
                        want.map(|w| w.0)
                    )));
                }
            }
            Op::Ack { consumer } => {
                let c = usize::from(consumer) % CONSUMERS.len();
                let got = handles.consumers[c]
                    .dequeue()
                    .map_err(|e| at(format!("dequeue: {e}")))?;
                let want = pending[c].pop_front();
                if got != want {
                    return Err(at(format!(
                        "{} dequeued n={:?}, the model says n={:?}",
                        CONSUMERS[c],
                        got.map(|g| g.n),
                        want.map(|w| w.n)
                    )));
                }
            }
            Op::Reopen => {
                handles.settle();
                drop(handles);
                check_all(&dir, &log).map_err(at)?;
                handles = open(&dir).map_err(at)?;
            }
            Op::Crash => {
                generation += 1;
                let copy = base.join(format!("q{generation}"));
                snapshot(&dir, &copy).map_err(at)?;
                handles.settle();
                drop(handles);
                let _ = std::fs::remove_dir_all(&dir);
                dir = copy;
                check_all(&dir, &log).map_err(at)?;
                handles = open(&dir).map_err(at)?;
            }
        }
    }
    handles.settle();
    drop(handles);
    check_all(&dir, &log).map_err(|e| format!("at the end: {e}"))
}

fn append(
    handles: &mut Handles,
    log: &mut Vec<Msg>,
    pending: &mut [VecDeque<Msg>],
    msg: Msg,
) -> Result<(), String> {
    let backlog = pending.iter().map(VecDeque::len).max().unwrap_or(0) as u64;
    match handles.producer.enqueue(&msg) {
        Ok(seq) => {
            if seq != log.len() as u64 {
                return Err(format!(
                    "enqueue gave seq {seq}, the model expects {}",
                    log.len()
                ));
            }
            if backlog >= CAPACITY {
                return Err(format!(
                    "enqueue accepted a message with a backlog of {backlog}"
                ));
            }
            log.push(msg.clone());
            for p in pending.iter_mut() {
                p.push_back(msg.clone());
            }
            Ok(())
        }
        Err(QueueError::Full { .. }) if backlog >= CAPACITY => Ok(()),
        Err(QueueError::Serialization { .. }) if msg.body.len() + 64 > MAX_MESSAGE as usize => {
            Ok(())
        }
        Err(e) => Err(format!(
            "enqueue of {} bytes with a backlog of {backlog}: {e}",
            msg.body.len()
        )),
    }
}
