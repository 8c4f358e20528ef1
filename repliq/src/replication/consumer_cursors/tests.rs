//! Consumer cursors shipped with the frames: what the primary ships (its consumers, each at
//! most what the stream sent, once per change), what the replica makes of them (created, moved
//! forward to at most what it holds, replica cursors untouched), and both through a real stream.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::JournalQueue;
use crate::journal::Journal;

#[crate::message(name = "test.CursorJob")]
#[derive(Debug, Clone, PartialEq)]
struct Job {
    id: u64,
}

/// A queue in `dir` holding `n` records.
fn queue(dir: &Path, n: u64) -> JournalQueue<Job> {
    let mut q = JournalQueue::<Job>::new(dir, 1_000_000).unwrap();
    for id in 0..n {
        q.enqueue(&Job { id }).unwrap();
    }
    q
}

/// Consumer `name` of the queue at `dir` takes `n` records.
fn consume(q: &JournalQueue<Job>, name: &str, n: u64) {
    let mut c = q.consumer(name).unwrap();
    for _ in 0..n {
        assert!(c.dequeue().unwrap().is_some());
    }
}

/// Every cursor of the queue at `dir`: (name, next sequence).
fn cursors(dir: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = crate::inspect(dir)
        .unwrap()
        .cursors
        .into_iter()
        .map(|c| (c.name, c.next_seq))
        .collect();
    all.sort();
    all
}

fn shipped(c: &[(&str, u64)]) -> Vec<ConsumerCursor> {
    c.iter()
        .map(|(name, next_seq)| ConsumerCursor {
            name: (*name).to_string(),
            next_seq: *next_seq,
        })
        .collect()
}

#[test]
fn the_primary_ships_its_consumers_once_per_change_at_most_what_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(dir.path(), 10);
    consume(&q, "slow", 2);
    consume(&q, "fast", 8);
    let journal = Journal::open(dir.path(), false).unwrap();
    // A replica cursor is never shipped.
    crate::journal::cursor::register_replica(&journal.meta, "b", || Ok(3)).unwrap();
    let mut sent = SentCursors::default();
    let mut got = sent.changed(&journal.meta, 5).unwrap();
    got.sort_by(|a, b| a.name.cmp(&b.name));
    // `JournalQueue::new` registered consumer `default`.
    assert_eq!(
        got,
        shipped(&[("default", 0), ("fast", 5), ("slow", 2)]),
        "at most what was sent"
    );
    assert_eq!(sent.changed(&journal.meta, 5), None, "sent once");
    // More records sent: `fast` is shipped again, up to them.
    let mut got = sent.changed(&journal.meta, 10).unwrap();
    got.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got, shipped(&[("default", 0), ("fast", 8), ("slow", 2)]));
    assert_eq!(sent.changed(&journal.meta, 10), None);
    consume(&q, "slow", 1);
    assert!(
        sent.changed(&journal.meta, 10).is_some(),
        "a move is a change"
    );
    assert_eq!(sent.changed(&journal.meta, 10), None);
    // A removal too (the replicas keep their copy: nothing to set).
    assert!(q.remove_consumer("slow"));
    let mut got = sent.changed(&journal.meta, 10).unwrap();
    got.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got, shipped(&[("default", 0), ("fast", 8)]));
    consume(&q, "new", 1);
    assert_eq!(
        sent.changed(&journal.meta, 10).unwrap().len(),
        3,
        "a new consumer too"
    );
    for name in ["default", "fast", "new"] {
        assert!(q.remove_consumer(name));
    }
    assert_eq!(
        sent.changed(&journal.meta, 10),
        Some(Vec::new()),
        "none left"
    );
}

#[test]
fn the_replica_creates_and_raises_cursors_at_most_what_it_holds_never_back_nor_a_replica_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(dir.path(), 10);
    consume(&q, "local", 6);
    let journal = Journal::open(dir.path(), false).unwrap();
    crate::journal::cursor::register_replica(&journal.meta, "c", || Ok(4)).unwrap();
    let moved = follow(
        &journal.meta,
        &shipped(&[
            ("new", 3),
            ("local", 2),
            ("ahead", 50),
            ("default", 1),
            ("replica:c", 9),
        ]),
        10,
        "q",
    );
    assert_eq!(moved, 3, "new, ahead (created), default (moved forward)");
    assert_eq!(
        cursors(dir.path()),
        vec![
            // At most what the replica holds.
            ("ahead".to_string(), 10),
            ("default".to_string(), 1),
            // Never moved back (its local consumer took 6).
            ("local".to_string(), 6),
            ("new".to_string(), 3),
            // A replica cursor is listed as the next record its replica needs.
            ("replica:c".to_string(), 5),
        ]
    );
    // Each layer on its own never moves a cursor back.
    assert!(!crate::journal::cursor::raise_consumer(&journal.meta, "local", 3).unwrap());
    assert!(cursors(dir.path()).contains(&("local".to_string(), 6)));
    assert!(crate::journal::cursor::raise_consumer(&journal.meta, "replica:c", 9).is_err());
    // Nothing changed: nothing moved.
    assert_eq!(follow(&journal.meta, &shipped(&[("new", 3)]), 10, "q"), 0);
    assert_eq!(follow(&journal.meta, &shipped(&[("new", 5)]), 10, "q"), 1);
    assert!(cursors(dir.path()).contains(&("new".to_string(), 5)));
}

/// Through a real stream (a replica service on loopback, the primary's replication running
/// embedded): a consumer's cursor committed on the primary appears on the replica once the
/// replica holds the records before it, its later moves reach the replica with the next
/// frame, and the primary's replica cursor is not shipped.
#[test]
fn a_cursor_committed_on_the_primary_appears_on_the_replica() {
    use crate::ReplicationMode;
    use crate::replication::{EmbeddedReplication, PrimaryOptions, ReplicaService};

    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&b).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let service = ReplicaService::new(b.clone()).into_server();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve(([127, 0, 0, 1], port).into()),
    );
    let primary = a.join("q");
    let mut q = queue(&primary, 10);
    consume(&q, "c", 4);
    let secondary = format!("b=127.0.0.1:{port}");
    let _replication = EmbeddedReplication::start(
        &primary,
        "a",
        &[secondary.as_str()],
        PrimaryOptions::new("a", Vec::new(), ReplicationMode::Asynchronous),
    )
    .unwrap();
    let replica = b.join("q");
    let wait = |what: &str, want: &[(&str, u64)]| {
        let want: Vec<(String, u64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = if replica.join("queue.meta").exists() {
                cursors(&replica)
            } else {
                Vec::new()
            };
            if now == want {
                return;
            }
            assert!(Instant::now() < deadline, "timed out: {what}: {now:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("the replica has c at 4", &[("c", 4), ("default", 0)]);
    assert!(
        cursors(&primary).iter().any(|(n, _)| n == "replica:b"),
        "the primary has a replica cursor, which is not shipped"
    );
    // A move without new records waits for the next frame.
    consume(&q, "c", 3);
    consume(&q, "d", 1);
    q.enqueue(&Job { id: 10 }).unwrap();
    wait(
        "the replica has c at 7 and d at 1",
        &[("c", 7), ("d", 1), ("default", 0)],
    );
}

/// Mixed versions: a replica built before field 9 decodes a frame with cursors (the field is
/// skipped, the others intact), and a frame from a primary built before it decodes here with no
/// cursors (nothing to set).
#[test]
fn frames_with_and_without_cursors_decode_on_either_version() {
    use prost::Message;

    use crate::replication::grpc::proto::Frame;

    /// `Frame` as `repliq.replication.v1` had it before field 9.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FrameBefore {
        #[prost(uint64, tag = "1")]
        epoch: u64,
        #[prost(uint64, tag = "5")]
        first_seq: u64,
        #[prost(uint32, tag = "6")]
        record_count: u32,
        #[prost(bytes = "vec", tag = "7")]
        bytes: Vec<u8>,
        #[prost(bytes = "vec", optional, tag = "8")]
        producers: Option<Vec<u8>>,
    }
    let new = Frame {
        epoch: 3,
        first_seq: 120,
        record_count: 2,
        bytes: bytes::Bytes::from_static(b"records"),
        producers: Some(bytes::Bytes::from_static(b"{}")),
        consumer_cursors: shipped(&[("c", 121)]),
        ..Frame::default()
    };
    let old = FrameBefore::decode(new.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        (
            old.epoch,
            old.first_seq,
            old.record_count,
            old.bytes.as_slice()
        ),
        (3, 120, 2, &b"records"[..])
    );
    assert_eq!(old.producers.as_deref(), Some(&b"{}"[..]));
    let back = Frame::decode(old.encode_to_vec().as_slice()).unwrap();
    assert!(back.consumer_cursors.is_empty());
    assert_eq!(
        Frame {
            consumer_cursors: shipped(&[("c", 121)]),
            ..back
        },
        new
    );
}
