//! What the recovery targets (`meta_file`, `segment_recovery`, `replication_state`) share: a
//! template queue made once per process with the public API (three 4 KiB segments of records, two
//! consumers, a `replication.json`), copied into a fresh directory for each input before the
//! target overwrites or trims the file under test; then [`exercise`], which opens the damaged
//! queue every way a program or tool does and reads everything it can.
//!
//! The contract checked: each open and each read returns `Ok` or a typed [`QueueError`] (never
//! `QueueError::Other`, the untyped catch-all), and never panics, loops without end or touches
//! memory it should not (the address sanitizer and `raw::sigbus` watch that). Seed inputs: set
//! `REPLIQ_FUZZ_WRITE_SEEDS=DIR` and run a target once (see fuzz/README.md).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use std::time::Duration;

use repliq::replication::ReplicationState;
use repliq::{QueueError, QueueOptions, RawQueue, RawTailer, StartAt, Tailer};

/// The template's segment size (the smallest allowed) and index interval (small, so index
/// points and their checks are reached in each segment).
pub const SEGMENT: u64 = 4096;
pub const INDEX_INTERVAL: u32 = 4;
/// Segments in the template; the last is the one being written.
pub const SEGMENTS: usize = 3;

/// A message with variable-length parts, so that a payload's validation has work to do.
#[repliq::message(name = "fuzz.Rec")]
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub id: u64,
    pub name: String,
    pub tags: Vec<u32>,
    pub note: Option<String>,
}

/// One file of the template queue.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The template's files: `queue.meta`, `schema.json`, `replication.json` and the segments
/// (ascending), without the spare file.
pub struct Template {
    pub files: Vec<TemplateFile>,
}

impl Template {
    pub fn file(&self, name: &str) -> &[u8] {
        &self
            .files
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("template has no {name}"))
            .bytes
    }

    /// The segment files' names, ascending.
    pub fn segments(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.name.ends_with(".seg"))
            .map(|f| f.name.clone())
            .collect();
        s.sort();
        s
    }
}

/// A new temporary directory, removed when dropped: on tmpfs when there is one (many small
/// files, fsyncs). Nothing outlives the process but the directory of an input that crashed.
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("repliq-fuzz-").clone();
    if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
    .expect("a temporary directory")
}

pub fn rec(i: u64) -> Rec {
    Rec {
        id: i,
        name: format!("record-{i}"),
        tags: (0..(i % 5) as u32).collect(),
        note: i.is_multiple_of(3).then(|| "n".repeat((i % 40) as usize)),
    }
}

/// The template, made on first use.
pub fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(make_template)
}

fn make_template() -> Template {
    let tmp = temp_dir();
    let dir = tmp.path().join("q");
    let options = QueueOptions::new()
        .capacity(10_000)
        .segment_size(SEGMENT)
        .index_interval(INDEX_INTERVAL);
    let mut producer = options
        .clone()
        .producer()
        .create::<Rec>(&dir)
        .expect("creating the template queue");
    let mut c1 = QueueOptions::new()
        .consumer("c1")
        .open::<Rec>(&dir)
        .expect("consumer c1");
    let mut c0 = QueueOptions::new().open::<Rec>(&dir).expect("consumer c0");
    let mut i = 0;
    while count_segments(&dir) < SEGMENTS {
        producer
            .enqueue(&rec(i))
            .expect("enqueue into the template");
        i += 1;
        assert!(i < 10_000, "the template never reached {SEGMENTS} segments");
    }
    // A few more into the last segment, so that it has records, an index point and a tail.
    for _ in 0..6 {
        producer
            .enqueue(&rec(i))
            .expect("enqueue into the template");
        i += 1;
    }
    producer.flush().expect("flush");
    // Cursors at different places: c0 in the second segment, c1 at the start.
    for _ in 0..(i / 2) {
        c0.dequeue().expect("dequeue").expect("a record");
    }
    let _ = c1.peek().expect("peek");
    // An epoch history: the node was a replica (epoch 1, from 0), then primary of epoch 2.
    let state = ReplicationState {
        epoch: 2,
        epoch_start: i / 2,
        epochs: repliq::replication::Lineage::checked(vec![
            repliq::replication::EpochStart { epoch: 1, start: 0 },
            repliq::replication::EpochStart {
                epoch: 2,
                start: i / 2,
            },
        ])
        .expect("a well-formed history"),
        ..ReplicationState::default()
    };
    producer.warm_up(Duration::from_secs(10));
    drop((producer, c0, c1));
    state.store(&dir).expect("writing replication.json");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("listing the template") {
        let entry = entry.expect("listing the template");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // the spare file, the lock file
        }
        files.push(TemplateFile {
            bytes: std::fs::read(entry.path()).expect("reading the template"),
            name,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let t = Template { files };
    if let Some(seeds) = std::env::var_os("REPLIQ_FUZZ_WRITE_SEEDS") {
        write_seeds(&t, Path::new(&seeds));
    }
    t
}

fn count_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

/// Seed inputs for the three targets, in `DIR/<target>/`.
fn write_seeds(t: &Template, dir: &Path) {
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).expect("seed directory");
        std::fs::write(d.join(name), bytes).expect("writing a seed");
    };
    let with = |flags: u8, body: &[u8]| {
        let mut v = vec![flags];
        v.extend_from_slice(body);
        v
    };
    let meta = t.file("queue.meta");
    put("meta_file", "seed-meta", &with(0, meta));
    put(
        "meta_file",
        "seed-meta-header",
        &with(meta::FIX_CRC, &meta[..512]),
    );
    let segs = t.segments();
    put(
        "segment_recovery",
        "seed-first-segment",
        &with(0, t.file(&segs[0])),
    );
    put(
        "segment_recovery",
        "seed-last-segment",
        &with(2 | segment::FIX_RECORD_CRCS, t.file(&segs[2])),
    );
    put(
        "replication_state",
        "seed-state",
        t.file(repliq::replication::STATE_FILE),
    );
    put(
        "replication_state",
        "seed-state-replica",
        br#"{"role":"replica","epoch":3,"epoch_start":40,"primary":"node-b","epochs":[{"epoch":1,"start":0},{"epoch":3,"start":40}]}"#,
    );
}

/// Flag bits of the first input byte, per target.
pub mod meta {
    /// Recompute the header checksum after the input is written (else random bytes never get
    /// past it).
    pub const FIX_CRC: u8 = 1;
    /// The file becomes exactly the input (else the input overwrites the template's start).
    pub const TRIM: u8 = 2;
}

pub mod segment {
    /// Bits 0–1: which segment (0, 1, 2; 3 = a new file after the last).
    pub const WHICH: u8 = 3;
    /// Recompute the segment header checksum.
    pub const FIX_HEADER_CRC: u8 = 4;
    /// The file becomes exactly the input.
    pub const TRIM: u8 = 8;
    /// Recompute the checksum of every committed record found walking the file, so that
    /// arbitrary payloads reach message validation.
    pub const FIX_RECORD_CRCS: u8 = 16;
    /// Delete the segment after the one written (a hole behind it).
    pub const DELETE_NEXT: u8 = 32;
}

/// A fresh directory holding the template's files. Removed when the value is dropped.
pub struct Scratch {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

pub fn scratch() -> Scratch {
    let t = template();
    let tmp = temp_dir();
    let dir = tmp.path().to_path_buf();
    for f in &t.files {
        std::fs::write(dir.join(&f.name), &f.bytes).expect("copying the template");
    }
    Scratch { _tmp: tmp, dir }
}

/// `bytes` written over the start of `base` (the result at least as long as `base`), or exactly
/// `bytes` when `trim`.
pub fn overlay(base: &[u8], bytes: &[u8], trim: bool) -> Vec<u8> {
    if trim {
        return bytes.to_vec();
    }
    let mut out = base.to_vec();
    if out.len() < bytes.len() {
        out.resize(bytes.len(), 0);
    }
    out[..bytes.len()].copy_from_slice(bytes);
    out
}

/// The crc32c of `b[..at]` stored at `at` (if the file is that long).
pub fn fix_crc(b: &mut [u8], at: usize) {
    if b.len() >= at + 4 {
        let crc = crc32c::crc32c(&b[..at]);
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Walks a segment image as the journal lays it out (docs/FORMAT.md: 32-byte headers at 16-byte
/// aligned offsets from the data start; a header word's top three bits are its state) and
/// recomputes the checksum of every committed record whose length fits.
pub fn fix_record_crcs(b: &mut [u8], data_start: usize) {
    let mut pos = data_start;
    while pos + 32 <= b.len() {
        let word = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap_or_default());
        let len = word as u32 as usize;
        let extent = ((word >> 32) & ((1 << 29) - 1)) as usize * 16;
        match word >> 61 {
            2 if extent == 0 && pos + 32 + len <= b.len() => {
                let seq = u64::from_le_bytes(b[pos + 8..pos + 16].try_into().unwrap_or_default());
                let time = u64::from_le_bytes(b[pos + 24..pos + 32].try_into().unwrap_or_default());
                let mut head = [0u8; 20];
                head[0..8].copy_from_slice(&seq.to_le_bytes());
                head[8..12].copy_from_slice(&(len as u32).to_le_bytes());
                head[12..20].copy_from_slice(&time.to_le_bytes());
                let crc =
                    crc32c::crc32c_append(crc32c::crc32c(&head), &b[pos + 32..pos + 32 + len]);
                b[pos + 16..pos + 20].copy_from_slice(&crc.to_le_bytes());
                pos += (32 + len).div_ceil(16) * 16;
            }
            3 if extent >= 32 => pos += extent,
            _ => pos += 16,
        }
    }
}

/// An error from an open or a read: anything but the untyped catch-all.
#[track_caller]
pub fn typed(what: &str, e: &QueueError) {
    assert!(
        !matches!(e, QueueError::Other(_)),
        "{what}: untyped error {e:?}"
    );
}

/// More records than the three segments can hold: a reader that returns this many is looping.
/// (Segment `WHICH = 3` adds a fourth file; a record takes at least 32 bytes.)
const MAX_READS: usize = (SEGMENTS + 2) * (SEGMENT as usize / 32);

/// Calls `next` until it gives `Ok(None)` or an error (checked to be typed); panics if it gives
/// more than [`MAX_READS`] records.
fn drain<T>(what: &str, mut next: impl FnMut() -> repliq::Result<Option<T>>) {
    for _ in 0..MAX_READS {
        match next() {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                typed(what, &e);
                return;
            }
        }
    }
    panic!("{what}: more than {MAX_READS} records from {SEGMENTS} segments of {SEGMENT} bytes");
}

/// Opens the queue in `dir` every way a program or a tool does and reads all it can; panics if
/// any step panics, returns an untyped error or does not end. `write`: also the steps that write
/// (consumer registration, an append: the appender's recovery and tail search).
pub fn exercise(dir: &Path, write: bool) {
    // The tools: read-only opens.
    let inspected = repliq::inspect(dir);
    if let Err(e) = &inspected {
        typed("inspect", e);
    }
    let verified = repliq::verify(dir, |_, _| {});
    if let Err(e) = &verified {
        typed("verify", e);
    }
    if let Err(e) = repliq::consumer_slots(dir) {
        typed("consumer_slots", &e);
    }
    match RawTailer::open(dir, None) {
        Err(e) => typed("RawTailer::open", &e),
        Ok(mut t) => {
            let mut read = 0u64;
            let mut failed = false;
            for _ in 0..MAX_READS {
                match t.try_next() {
                    Ok(Some(_)) => read += 1,
                    Ok(None) => break,
                    Err(e) => {
                        typed("RawTailer::try_next", &e);
                        failed = true;
                        match t.skip_damaged() {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => {
                                typed("RawTailer::skip_damaged", &e);
                                break;
                            }
                        }
                    }
                }
            }
            assert!(
                (read as usize) < MAX_READS,
                "the raw tailer read {read} records from {SEGMENTS} segments of {SEGMENT} bytes"
            );
            // What verify found intact, a tailer from the start reads without an error.
            if let Ok(report) = &verified
                && report.in_progress == 0
            {
                assert!(
                    !failed && read == report.records,
                    "verify passed with {} records, the raw tailer read {read} (failed: {failed})",
                    report.records
                );
            }
        }
    }
    if let Err(e) = ReplicationState::load(dir) {
        typed("ReplicationState::load", &e);
    }
    if !write {
        return;
    }
    // A typed tailer (payloads validated as `Rec`).
    match Tailer::<Rec>::open(dir, StartAt::Earliest) {
        Err(e) => typed("Tailer::open", &e),
        Ok(mut t) => drain("Tailer::try_next", || t.try_next()),
    }
    // Consumers: registration (cursor slots in the meta file), then everything they may read.
    for name in ["c1", "fresh"] {
        match QueueOptions::new().consumer(name).open::<Rec>(dir) {
            Err(e) => typed("open consumer", &e),
            Ok(mut q) => {
                drain("dequeue", || q.dequeue());
                if let Err(e) = q.backlog() {
                    typed("backlog", &e);
                }
            }
        }
    }
    // A producer: the appender's recovery (segment chain, tail search, hole check), then appends
    // at the tail it found (which may roll into a new segment). Not when the (damaged) policy
    // words say appends wait for replicas' acknowledgements: nothing acknowledges here, so each
    // would wait the policy's timeout (up to 2^64 ms) and then fail.
    match RawQueue::producer(dir) {
        Err(e) => typed("open raw producer", &e),
        Ok(mut raw) => {
            if let Err(e) = raw.next_seq() {
                typed("next_seq", &e);
            }
            if !raw.waits_for_acks() {
                match QueueOptions::new().producer().open::<Rec>(dir) {
                    Err(e) => typed("open producer", &e),
                    Ok(mut p) => {
                        for i in 0..3 {
                            if let Err(e) = p.enqueue(&rec(1_000_000 + i)) {
                                typed("enqueue", &e);
                                break;
                            }
                        }
                        // The spare segment file the producer may prepare in the background:
                        // done before the directory goes.
                        p.warm_up(Duration::from_secs(10));
                    }
                }
            }
        }
    }
    if let Err(e) = repliq::verify(dir, |_, _| {}) {
        typed("verify after writing", &e);
    }
}
