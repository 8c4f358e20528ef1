//! A replica applying arbitrary message sequences: the replica's service (`ReplicaService`'s
//! opening, admission and batch application, through `repliq::__fuzz::ReplicaDriver`, without
//! the transport) over a real queue directory, fed an arbitrary sequence of steps decoded with
//! `arbitrary`: Hellos (epochs, epoch histories, mismatching queue parameters), frames read from
//! one of two real primaries' journals (same type, different records) with their epoch, offset
//! or bytes changed, or their record contents replaced by arbitrary bytes with valid checksums,
//! raw frames of arbitrary bytes, resync announcements, frames from a superseded stream, a
//! message out of place, a promotion of the replica by another process, and a restart of the
//! service.
//!
//! Checked after each step:
//! * no panic; every refusal carries a reason code (not `UNSPECIFIED`, except for a message out
//!   of place, which is the protocol's catch-all) and a detail;
//! * what the replica holds passes `verify` and a raw tailer reads every record `verify` counts,
//!   with consecutive sequence numbers;
//! * every acknowledgement's next sequence is held (the records from the oldest held up to it are
//!   readable), and within one epoch acknowledgements never go back;
//! * a record acknowledged in the epoch the replica still follows never changes (payload and
//!   write time) and never disappears, except from the front by a resync (the primary's
//!   retention dropped it). A newer epoch may move records aside: the new primary's history
//!   decides, and the fuzzer's primaries claim anything.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use repliq::__fuzz::{DriverRefusal, DriverStream, ReplicaDriver, SourceFrame};
use repliq::replication::ReplicationState;
use repliq::replication::grpc::proto::{
    self, PrimaryMessage, Resync, primary_message, refused::Reason,
};
use repliq::{Fingerprint, Message, QueueOptions, RawTailer};

mod recovery;
use recovery::Rec;

const SEGMENT: u64 = 4096;
const INDEX_INTERVAL: u32 = 4;
const QUEUE: &str = "q";

/// One primary's journal, read by its sender once per process.
struct Primary {
    _tmp: tempfile::TempDir,
    /// Frames from record 0 on, at most 1, 3 and 64 records each.
    sets: Vec<Vec<SourceFrame>>,
    /// Per segment (by first sequence): the frames of a resync from its start.
    resync: Vec<(u64, Vec<SourceFrame>)>,
    capacity: u64,
    max_payload: u32,
}

fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("repliq-fuzz-").clone();
    if shm.is_dir() {
        b.tempdir_in(shm)
    } else {
        b.tempdir()
    }
    .expect("a temporary directory")
}

fn make_primary(salt: u64) -> Primary {
    let tmp = temp_dir();
    let dir = tmp.path().join("p");
    let mut producer = QueueOptions::new()
        .capacity(10_000)
        .segment_size(SEGMENT)
        .index_interval(INDEX_INTERVAL)
        .producer()
        .create::<Rec>(&dir)
        .expect("creating a primary");
    for i in 0..60 {
        let mut r = recovery::rec(i);
        r.id = i + salt;
        r.name.push_str(&"x".repeat(salt as usize % 7));
        producer.enqueue(&r).expect("enqueue");
    }
    producer.flush().expect("flush");
    drop(producer);
    let sets = [1, 3, 64]
        .iter()
        .map(|&n| repliq::__fuzz::primary_frames(&dir, 0, false, n).expect("frames"))
        .collect();
    let info = repliq::inspect(&dir).expect("inspect");
    let resync = info
        .segments
        .iter()
        .map(|&s| {
            let frames = repliq::__fuzz::primary_frames(&dir, s, true, 4).expect("resync frames");
            (s, frames)
        })
        .collect();
    let meta = std::fs::read(dir.join("queue.meta")).expect("meta");
    let max_payload = u32::from_le_bytes(meta[44..48].try_into().expect("4 bytes"));
    Primary {
        _tmp: tmp,
        sets,
        resync,
        capacity: info.capacity,
        max_payload,
    }
}

fn primaries() -> &'static [Primary; 2] {
    static P: OnceLock<[Primary; 2]> = OnceLock::new();
    P.get_or_init(|| [make_primary(0), make_primary(1000)])
}

#[derive(Arbitrary, Debug)]
enum Op {
    Hello {
        primary: bool,
        epoch: u8,
        epoch_start: u8,
        /// (epoch, start) pairs; empty: a primary that predates histories.
        history: Vec<(u8, u8)>,
        tweak: u8,
        lazy: bool,
    },
    Frame {
        stream: u8,
        primary: bool,
        set: u8,
        index: u16,
        epoch: Option<u8>,
        epoch_start: Option<u8>,
        offset: Option<u16>,
        segment: Option<u8>,
        damage: Option<(u16, u8)>,
        /// Arbitrary record contents (checksums recomputed).
        contents: Option<Vec<u8>>,
    },
    ResyncFrame {
        stream: u8,
        primary: bool,
        segment: u8,
        index: u8,
        announce: bool,
    },
    Resync {
        stream: u8,
        segment_first_seq: u16,
    },
    Raw {
        stream: u8,
        epoch: Option<u8>,
        segment_first_seq: u16,
        offset: u16,
        bytes: Vec<u8>,
    },
    OutOfPlace {
        stream: u8,
    },
    Promote,
    Restart,
}

/// What one input's steps have seen.
struct Run {
    root: PathBuf,
    driver: ReplicaDriver,
    streams: Vec<(DriverStream, u64, u64)>,
    /// Acknowledged records of the epoch `acked_epoch`: seq -> (time, payload).
    acked: BTreeMap<u64, (u64, Vec<u8>)>,
    acked_epoch: u64,
    /// The highest next sequence acknowledged in `acked_epoch`.
    acked_next: u64,
}

fn hello(
    p: &Primary,
    epoch: u64,
    epoch_start: u64,
    history: &[(u8, u8)],
    tweak: u8,
) -> proto::Hello {
    let mut h = proto::Hello {
        queue: QUEUE.into(),
        primary: "p".into(),
        epoch,
        epoch_start,
        message_type: Rec::NAME.into(),
        fingerprint: Rec::FINGERPRINT,
        segment_size: SEGMENT,
        capacity: p.capacity,
        index_interval: INDEX_INTERVAL,
        max_payload: p.max_payload,
        schema_json: None,
        sync_lazily: false,
        epochs: history
            .iter()
            .map(|&(e, s)| proto::EpochStart {
                epoch: u64::from(e % 8),
                start: u64::from(s % 80),
            })
            .collect(),
    };
    match tweak % 24 {
        0 => h.segment_size = 8192,
        1 => h.fingerprint ^= 1,
        2 => h.message_type.clear(),
        3 => h.queue = "../escape".into(),
        4 => h.max_payload = u32::MAX,
        5 => h.schema_json = Some("{\"name\": 1}".into()),
        6 => h.index_interval = 0,
        7 => h.capacity = 0,
        8 => h.queue = String::new(),
        9 => h.epoch = u64::MAX,
        _ => {}
    }
    h
}

fn frame_message(f: &SourceFrame, epoch: u64, epoch_start: u64) -> proto::Frame {
    proto::Frame {
        epoch,
        epoch_start,
        segment_first_seq: f.segment_first_seq,
        offset: f.offset,
        first_seq: f.first_seq,
        record_count: f.record_count,
        bytes: f.bytes.clone().into(),
        producers: None,
        consumer_cursors: Vec::new(),
    }
}

fn msg(kind: primary_message::Kind) -> PrimaryMessage {
    PrimaryMessage { kind: Some(kind) }
}

/// Every record the replica holds, in order, or nothing if there is no queue yet; checks `verify`.
fn held(dir: &Path) -> Vec<(u64, u64, Vec<u8>)> {
    if !dir.join("queue.meta").exists() {
        return Vec::new();
    }
    let report = repliq::verify(dir, |_, _| {})
        .unwrap_or_else(|e| panic!("what the replica accepted fails verify: {e}"));
    assert_eq!(
        report.in_progress, 0,
        "a replica leaves no reservation open"
    );
    let mut t = RawTailer::open(dir, None).expect("a raw tailer on the replica");
    let mut out: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    while let Some(r) = t.try_next().expect("reading what verify passed") {
        if let Some(last) = out.last() {
            assert_eq!(r.seq, last.0 + 1, "the replica's records are consecutive");
        }
        out.push((r.seq, r.time_unix_nanos, r.payload));
        assert!(out.len() < 10_000, "a raw tailer looping");
    }
    assert_eq!(
        out.len() as u64,
        report.records,
        "verify and the tailer agree"
    );
    out
}

impl Run {
    fn dir(&self) -> PathBuf {
        self.root.join(QUEUE)
    }

    /// The stream step `i` sends on: mostly the newest; sometimes an older (superseded) one.
    fn pick(&self, i: u8) -> Option<usize> {
        let n = self.streams.len();
        (n > 0).then(|| if i < 200 { n - 1 } else { usize::from(i) % n })
    }

    fn stream(&self, i: u8) -> Option<&(DriverStream, u64, u64)> {
        self.pick(i).map(|k| &self.streams[k])
    }

    fn send(
        &mut self,
        i: u8,
        m: PrimaryMessage,
    ) -> Option<Result<Option<(u64, u64)>, DriverRefusal>> {
        let out_of_place = !matches!(
            m.kind,
            Some(primary_message::Kind::Frame(_) | primary_message::Kind::Resync(_))
        );
        let k = self.pick(i)?;
        let r = self.driver.message(&mut self.streams[k].0, m);
        if let Err(e) = &r {
            refusal_is_typed(e, out_of_place);
        }
        Some(r)
    }

    fn check(&mut self, ack: Option<(u64, u64)>) {
        let dir = self.dir();
        let records = held(&dir);
        if trace() {
            let first = records.first().map(|f| f.0);
            eprintln!(
                "replica_frames: held {} from {first:?}, ack {ack:?}",
                records.len()
            );
        }
        let epoch = ReplicationState::load(&dir).map_or(0, |s| s.epoch);
        if epoch != self.acked_epoch {
            self.acked.clear();
            self.acked_epoch = epoch;
            self.acked_next = 0;
        }
        let first = records.first().map_or(u64::MAX, |r| r.0);
        let next = records.last().map_or(0, |r| r.0 + 1);
        if let Some((ack_epoch, ack_next)) = ack {
            assert_eq!(
                ack_epoch, epoch,
                "an acknowledgement names the epoch the replica follows"
            );
            if !records.is_empty() && ack_next > first {
                assert!(
                    ack_next <= next,
                    "acknowledged up to {ack_next} but the replica holds {first}..{next}"
                );
            }
            assert!(
                ack_next >= self.acked_next,
                "acknowledgements went back in epoch {epoch}: {} then {ack_next}",
                self.acked_next
            );
            self.acked_next = ack_next;
            for (seq, time, payload) in &records {
                if *seq < ack_next {
                    self.acked
                        .entry(*seq)
                        .or_insert_with(|| (*time, payload.clone()));
                }
            }
        }
        if !records.is_empty() && self.acked_next > first {
            assert!(
                next >= self.acked_next,
                "records acknowledged up to {} in epoch {epoch}, the replica holds {first}..{next}",
                self.acked_next
            );
        }
        for (seq, (time, payload)) in &self.acked {
            if let Some(i) = seq.checked_sub(first).filter(|&i| i < records.len() as u64) {
                let r = &records[i as usize];
                assert!(
                    r.1 == *time && r.2 == *payload,
                    "record {seq}, acknowledged in epoch {epoch}, changed"
                );
            } else {
                assert!(
                    records.is_empty() || *seq < first,
                    "record {seq}, acknowledged in epoch {epoch}, vanished (held {first}..{next})"
                );
            }
        }
    }
}

/// `REPLIQ_FUZZ_TRACE=1`: one line per step and refusal on stderr (what a corpus reaches).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("REPLIQ_FUZZ_TRACE").is_some())
}

fn refusal_is_typed(e: &DriverRefusal, out_of_place: bool) {
    if trace() {
        eprintln!("replica_frames: refused {:?}: {}", e.reason, e.detail);
    }
    assert!(!e.detail.is_empty(), "a refusal without a detail: {e:?}");
    if !out_of_place {
        assert!(
            e.reason != Reason::Unspecified,
            "a refusal without a reason code: {e:?}"
        );
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let tmp = temp_dir();
    let root = tmp.path().to_path_buf();
    let mut run = Run {
        driver: ReplicaDriver::new(root.clone()),
        root,
        streams: Vec::new(),
        acked: BTreeMap::new(),
        acked_epoch: 0,
        acked_next: 0,
    };
    let ps = primaries();
    for op in ops.into_iter().take(64) {
        if trace() {
            eprintln!("replica_frames: step {op:?}");
        }
        let mut ack = None;
        match op {
            Op::Hello {
                primary,
                epoch,
                epoch_start,
                history,
                tweak,
                lazy,
            } => {
                let p = &ps[usize::from(primary)];
                let (epoch, start) = (u64::from(epoch % 8), u64::from(epoch_start % 80));
                let mut h = hello(p, epoch, start, &history, tweak);
                h.sync_lazily = lazy;
                let (epoch, start) = (h.epoch, h.epoch_start);
                match run.driver.hello(h) {
                    Ok((s, sub_epoch, _next)) => {
                        assert!(sub_epoch >= epoch, "subscribed in an older epoch");
                        run.streams.push((s, epoch, start));
                    }
                    Err(e) => refusal_is_typed(&e, false),
                }
            }
            Op::Frame {
                stream,
                primary,
                set,
                index,
                epoch,
                epoch_start,
                offset,
                segment,
                damage,
                contents,
            } => {
                let p = &ps[usize::from(primary)];
                let frames = &p.sets[usize::from(set) % p.sets.len()];
                let Some(f) = frames.get(usize::from(index) % frames.len().max(1)) else {
                    continue;
                };
                let Some((e, s)) = run.stream(stream).map(|t| (t.1, t.2)) else {
                    continue;
                };
                let e = epoch.map_or(e, |x| u64::from(x % 8));
                let s = epoch_start.map_or(s, |x| u64::from(x % 80));
                let mut m = frame_message(f, e, s);
                if let Some(o) = offset {
                    m.offset = u64::from(o);
                }
                if let Some(seg) = segment {
                    m.segment_first_seq = u64::from(seg % 80);
                }
                let mut bytes = m.bytes.to_vec();
                if let Some(fill) = contents {
                    repliq::__fuzz::rewrite_payloads(&mut bytes, &fill);
                }
                if let Some((at, x)) = damage
                    && !bytes.is_empty()
                {
                    let at = usize::from(at) % bytes.len();
                    bytes[at] ^= x.max(1);
                }
                m.bytes = bytes.into();
                if let Some(r) = run.send(stream, msg(primary_message::Kind::Frame(m))) {
                    ack = r.ok().flatten();
                }
            }
            Op::ResyncFrame {
                stream,
                primary,
                segment,
                index,
                announce,
            } => {
                let p = &ps[usize::from(primary)];
                let (first, frames) = &p.resync[usize::from(segment) % p.resync.len()];
                let Some(f) = frames.get(usize::from(index) % frames.len().max(1)) else {
                    continue;
                };
                let Some((e, s)) = run.stream(stream).map(|t| (t.1, t.2)) else {
                    continue;
                };
                let m = frame_message(f, e, s);
                if announce {
                    let r = Resync {
                        segment_first_seq: *first,
                    };
                    run.send(stream, msg(primary_message::Kind::Resync(r)));
                }
                if let Some(r) = run.send(stream, msg(primary_message::Kind::Frame(m))) {
                    ack = r.ok().flatten();
                }
            }
            Op::Resync {
                stream,
                segment_first_seq,
            } => {
                let r = Resync {
                    segment_first_seq: u64::from(segment_first_seq),
                };
                run.send(stream, msg(primary_message::Kind::Resync(r)));
            }
            Op::Raw {
                stream,
                epoch,
                segment_first_seq,
                offset,
                bytes,
            } => {
                let Some((e, s)) = run.stream(stream).map(|t| (t.1, t.2)) else {
                    continue;
                };
                let m = proto::Frame {
                    epoch: epoch.map_or(e, |x| u64::from(x % 8)),
                    epoch_start: s,
                    segment_first_seq: u64::from(segment_first_seq),
                    offset: u64::from(offset),
                    first_seq: 0,
                    record_count: 0,
                    bytes: bytes.into(),
                    producers: None,
                    consumer_cursors: Vec::new(),
                };
                if let Some(r) = run.send(stream, msg(primary_message::Kind::Frame(m))) {
                    ack = r.ok().flatten();
                }
            }
            Op::OutOfPlace { stream } => {
                let h = hello(&ps[0], 0, 0, &[], 99);
                run.send(stream, msg(primary_message::Kind::Hello(h)));
            }
            Op::Promote => {
                let dir = run.dir();
                if dir.join("queue.meta").exists()
                    && let Err(e) = ReplicationState::promote(&dir)
                {
                    recovery::typed("promote", &e);
                }
            }
            Op::Restart => {
                run.streams.clear();
                run.driver = ReplicaDriver::new(run.root.clone());
            }
        }
        run.check(ack);
    }
});
