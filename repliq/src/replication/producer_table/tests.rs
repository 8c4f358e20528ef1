//! The producers' table file: decoding (typed errors naming the file), resolving against a
//! journal that holds all, part or none of the listed batches, the replica's waiting tables,
//! roll-back after a move-aside and installation at a promotion.

use std::path::Path;

use super::*;
use crate::JournalQueue;

#[crate::message(name = "test.ProducedJob")]
#[derive(Debug, Clone, PartialEq)]
struct Job {
    id: u64,
}

fn bytes(id: u64) -> Vec<u8> {
    crate::to_bytes(&Job { id }).unwrap().to_vec()
}

/// A queue in `dir` holding the records with these ids, in order.
fn journal(dir: &Path, ids: &[u64]) {
    let mut q = JournalQueue::<Job>::new(dir, 1_000_000).unwrap();
    for &id in ids {
        q.enqueue(&Job { id }).unwrap();
    }
}

fn state(epoch: u64, next_seq: u64, last: Option<u64>) -> ProducerState {
    ProducerState {
        epoch,
        next_seq,
        last_queue_seq: last,
    }
}

fn batch(
    producer: &str,
    first_seq: u64,
    journal_from: u64,
    ids: std::ops::Range<u64>,
    before: Option<ProducerState>,
) -> Pending {
    let records: Vec<Vec<u8>> = ids.map(bytes).collect();
    Pending {
        producer: producer.into(),
        epoch: 1,
        first_seq,
        journal_from,
        crcs: checksums(&records),
        before,
    }
}

/// Producer p wrote ids 0..3 (queue 0..3, history), q ids 100..102 (queue 3..5, history), p
/// ids 3..6 is pending (queue 5..8): the primary's table just before p's second batch.
fn table() -> TableFile {
    let mut t = TableFile {
        version: VERSION,
        ..TableFile::default()
    };
    t.appended(batch("p", 0, 0, 0..3, None), state(1, 3, Some(2)));
    t.appended(batch("q", 0, 3, 100..102, None), state(1, 2, Some(4)));
    t.pending = Some(batch("p", 3, 5, 3..6, Some(state(1, 3, Some(2)))));
    t
}

const ALL: [u64; 8] = [0, 1, 2, 100, 101, 3, 4, 5];

#[test]
fn garbage_torn_and_unknown_versions_are_typed_errors_naming_the_file() {
    let path = Path::new("/queues/orders/producers.json");
    let err = TableFile::parse(path, b"\x00\x01garbage").unwrap_err();
    assert!(matches!(err, ProducerTableError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("/queues/orders/producers.json"),
        "{err}"
    );
    let whole = serde_json::to_vec(&table()).unwrap();
    let torn = &whole[..whole.len() / 2];
    let err = TableFile::parse(path, torn).unwrap_err();
    assert!(matches!(err, ProducerTableError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("producers.json is damaged"),
        "{err}"
    );
    let err = TableFile::parse(path, br#"{"version": 9, "producers": {}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ProducerTableError::UnsupportedVersion { version: 9, .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("/queues/orders/producers.json"),
        "{err}"
    );
    // Batches out of journal order, a batch without records.
    let mut t = table();
    t.history.swap(0, 1);
    let err = TableFile::parse(path, &serde_json::to_vec(&t).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("is not after the one before it"),
        "{err}"
    );
    let mut t = table();
    t.history[1].crcs.clear();
    let err = TableFile::parse(path, &serde_json::to_vec(&t).unwrap()).unwrap_err();
    assert!(err.to_string().contains("has no records"), "{err}");
    // The file read from disk: its path in the error.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(PRODUCERS_FILE);
    std::fs::write(&file, b"{\"version\": 2, \"produc").unwrap();
    let err = TableFile::read(&file).unwrap_err();
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(
        TableFile::read(&dir.path().join("none.json")).unwrap(),
        None
    );
}

#[test]
fn a_version_1_file_reads_with_its_pending_batch_put_back_to_the_table() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), &[0, 1, 2, 3]);
    let crcs = checksums(&[bytes(3), bytes(4)]);
    let v1 = format!(
        r#"{{"version":1,"producers":{{"p":{{"epoch":1,"next_seq":3,"last_queue_seq":2}}}},
            "pending":{{"producer":"p","epoch":1,"first_seq":3,"journal_from":3,"crcs":{crcs:?}}}}}"#
    );
    let t = TableFile::parse(Path::new("producers.json"), v1.as_bytes()).unwrap();
    assert_eq!(
        t.pending.as_ref().unwrap().before,
        Some(state(1, 3, Some(2)))
    );
    assert_eq!(t.valid_from(), 3);
    // One of the pending batch's two records is in the journal.
    let (resolved, short) = t.resolve(dir.path());
    assert_eq!(resolved.producers["p"], state(1, 4, Some(3)));
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].written, 1);
    assert_eq!(resolved.version, VERSION);
}

#[test]
fn a_journal_holding_everything_resolves_the_pending_batch_forward() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), &ALL);
    let t = table();
    assert_eq!(t.valid_from(), 0);
    let (resolved, short) = t.resolve(dir.path());
    assert!(short.is_empty(), "{short:?}");
    assert_eq!(resolved.producers["p"], state(1, 6, Some(7)));
    assert_eq!(resolved.producers["q"], state(1, 2, Some(4)));
    assert_eq!(resolved.pending, None);
    assert_eq!(
        resolved.history.len(),
        3,
        "the written pending batch joins the history"
    );
    // Resolving again changes nothing.
    assert_eq!(resolved.resolve(dir.path()).0, resolved);
}

#[test]
fn a_journal_cut_anywhere_puts_back_exactly_the_records_it_lacks() {
    // (records the journal holds, p's state, q's state)
    let cases: [(usize, Option<ProducerState>, Option<ProducerState>); 5] = [
        (7, Some(state(1, 5, Some(6))), Some(state(1, 2, Some(4)))),
        (5, Some(state(1, 3, Some(2))), Some(state(1, 2, Some(4)))),
        (4, Some(state(1, 3, Some(2))), Some(state(1, 1, Some(3)))),
        (2, Some(state(1, 2, Some(1))), None),
        (0, None, None),
    ];
    for (held, p, q) in cases {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), &ALL[..held]);
        let (resolved, _) = table().resolve(dir.path());
        assert_eq!(resolved.producers.get("p").copied(), p, "holding {held}");
        assert_eq!(resolved.producers.get("q").copied(), q, "holding {held}");
        // What it claims, it holds: the resolved table is valid for this journal.
        assert!(resolved.valid_from() <= held as u64, "holding {held}");
    }
}

#[test]
fn the_history_is_bounded_and_valid_from_follows_its_oldest_batch() {
    let mut t = TableFile {
        version: VERSION,
        ..TableFile::default()
    };
    for i in 0..100u64 {
        t.appended(
            batch("p", i * 10, i * 10, i * 10..i * 10 + 10, None),
            state(1, i * 10 + 10, Some(i * 10 + 9)),
        );
    }
    assert_eq!(t.history.len(), HISTORY_BATCHES);
    assert_eq!(t.valid_from(), (100 - HISTORY_BATCHES as u64) * 10);
    let mut big = TableFile::default();
    for i in 0..10u64 {
        big.appended(
            batch("p", i * 1000, i * 1000, 0..1000, None),
            state(1, i * 1000 + 1000, Some(i * 1000 + 999)),
        );
    }
    assert_eq!(
        big.history.len(),
        HISTORY_RECORDS / 1000,
        "{HISTORY_RECORDS} checksums at most"
    );
    // No batch listed: one past the newest record claimed.
    let plain = TableFile {
        version: VERSION,
        producers: [("p".to_string(), state(1, 5, Some(41)))].into(),
        ..TableFile::default()
    };
    assert_eq!(plain.valid_from(), 42);
    assert_eq!(TableFile::default().valid_from(), 0);
}

#[test]
fn a_replica_stores_a_shipped_table_only_once_it_holds_what_the_table_claims() {
    let mut tables = ShippedTables::default();
    let at = |from: u64| TableFile {
        version: VERSION,
        producers: [("p".to_string(), state(1, from, Some(from - 1)))].into(),
        ..TableFile::default()
    };
    tables.offer(at(10));
    tables.offer(at(20));
    tables.offer(at(30));
    assert_eq!(tables.take_ready(5), None, "holds nothing the tables claim");
    assert_eq!(tables.take_ready(9), None, "the first claims record 9");
    let ready = tables.take_ready(25).unwrap();
    assert_eq!(ready.valid_from(), 20, "the newest it may store");
    assert_eq!(tables.len(), 1, "the older one went with it");
    assert_eq!(tables.take_ready(30).unwrap().valid_from(), 30);
    assert!(tables.is_empty());
    for i in 0..20 {
        tables.offer(at(100 + i));
    }
    assert_eq!(tables.len(), 8, "bounded");
    // Too large, or garbage: refused with the file's name.
    let path = Path::new("q/producers.replica.json");
    let err = ShippedTables::decode(path, &vec![b' '; MAX_SHIPPED_BYTES + 1]).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    let err = ShippedTables::decode(path, b"[1, 2]").unwrap_err();
    assert!(
        err.to_string().contains("q/producers.replica.json"),
        "{err}"
    );
}

#[test]
fn a_move_aside_rolls_the_table_back_or_moves_it_aside() {
    // The old primary held all eight records; the new epoch began at 4.
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), &ALL[..4]);
    let path = dir.path().join(PRODUCERS_FILE);
    table().store(&path).unwrap();
    let outcome = roll_back_to(dir.path(), PRODUCERS_FILE, 4).unwrap();
    assert!(
        matches!(&outcome, RollBack::Resolved(short) if short.len() == 2),
        "{outcome:?}"
    );
    let now = TableFile::read(&path).unwrap().unwrap();
    assert_eq!(now.producers["p"], state(1, 3, Some(2)));
    assert_eq!(now.producers["q"], state(1, 1, Some(3)));
    assert_eq!(now.pending, None);
    // A table that claims records before the cut without listing them cannot be put back.
    let claims = TableFile {
        version: VERSION,
        producers: [("p".to_string(), state(1, 9, Some(8)))].into(),
        ..TableFile::default()
    };
    claims.store(&path).unwrap();
    match roll_back_to(dir.path(), PRODUCERS_FILE, 4).unwrap() {
        RollBack::MovedAside { to, reason } => {
            assert!(to.starts_with(dir.path().join("moved-aside")), "{to:?}");
            assert!(to.exists());
            assert!(reason.contains("up to 9"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    // A damaged one too.
    std::fs::write(&path, b"{").unwrap();
    assert!(matches!(
        roll_back_to(dir.path(), PRODUCERS_FILE, 4).unwrap(),
        RollBack::MovedAside { .. }
    ));
    assert_eq!(
        roll_back_to(dir.path(), PRODUCERS_FILE, 4).unwrap(),
        RollBack::Absent
    );
}

#[test]
fn a_promotion_installs_the_shipped_table_resolved_against_the_replicas_journal() {
    let dir = tempfile::tempdir().unwrap();
    // The replica holds 7 of the 8 records: p's pending batch in part.
    journal(dir.path(), &ALL[..7]);
    // An own table of an earlier term, and the one the primary shipped.
    TableFile {
        version: VERSION,
        producers: [("old".to_string(), state(1, 1, Some(0)))].into(),
        ..TableFile::default()
    }
    .store(&dir.path().join(PRODUCERS_FILE))
    .unwrap();
    table()
        .store(&dir.path().join(REPLICA_PRODUCERS_FILE))
        .unwrap();
    let outcome = install_on_promotion(dir.path(), 7).unwrap();
    assert!(matches!(outcome, RollBack::Resolved(_)), "{outcome:?}");
    assert!(!dir.path().join(REPLICA_PRODUCERS_FILE).exists());
    let installed = TableFile::read(&dir.path().join(PRODUCERS_FILE))
        .unwrap()
        .unwrap();
    assert_eq!(installed.producers.get("old"), None);
    assert_eq!(installed.producers["p"], state(1, 5, Some(6)));
    // Without a shipped table the own one is resolved in place.
    assert!(matches!(
        install_on_promotion(dir.path(), 7).unwrap(),
        RollBack::Resolved(_)
    ));
}

/// A measurement, not a check: the cost of one table write with and without a history.
/// `cargo test -p repliq --lib -- --ignored --nocapture table_write_cost`
#[test]
#[ignore = "a measurement; run by hand"]
fn table_write_cost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PRODUCERS_FILE);
    for batches in [0u64, 4, 32] {
        let mut t = TableFile {
            version: VERSION,
            ..TableFile::default()
        };
        for i in 0..batches {
            t.appended(
                Pending {
                    producer: "p".into(),
                    epoch: 1,
                    first_seq: i * 100,
                    journal_from: i * 100,
                    crcs: (0..100).map(|c| u32::MAX - c).collect(),
                    before: Some(state(1, i * 100, Some(i * 100))),
                },
                state(1, i * 100 + 100, Some(i * 100 + 99)),
            );
        }
        let start = std::time::Instant::now();
        for _ in 0..100 {
            t.store(&path).unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        println!(
            "history of {} batches ({len} bytes): {:?} a write",
            t.history.len(),
            start.elapsed() / 100
        );
    }
}

/// Mixed versions: a replica built before `Frame.producers` decodes a frame that carries a
/// table (the field is skipped, every other field intact), and a frame from a primary built
/// before it decodes here without a table.
#[cfg(feature = "replication")]
#[test]
fn frames_with_and_without_a_table_decode_on_either_version() {
    use prost::Message;

    use crate::replication::grpc::proto::Frame;

    /// `Frame` as `repliq.replication.v1` had it before field 8.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FrameBefore {
        #[prost(uint64, tag = "1")]
        epoch: u64,
        #[prost(uint64, tag = "2")]
        epoch_start: u64,
        #[prost(uint64, tag = "3")]
        segment_first_seq: u64,
        #[prost(uint64, tag = "4")]
        offset: u64,
        #[prost(uint64, tag = "5")]
        first_seq: u64,
        #[prost(uint32, tag = "6")]
        record_count: u32,
        #[prost(bytes = "vec", tag = "7")]
        bytes: Vec<u8>,
    }
    let table = serde_json::to_vec(&table()).unwrap();
    let new = Frame {
        epoch: 3,
        epoch_start: 100,
        segment_first_seq: 64,
        offset: 4096,
        first_seq: 120,
        record_count: 2,
        bytes: bytes::Bytes::from_static(b"records"),
        producers: Some(table.clone().into()),
        consumer_cursors: Vec::new(),
    };
    let old = FrameBefore::decode(new.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        (old.epoch, old.epoch_start, old.first_seq, old.record_count),
        (3, 100, 120, 2)
    );
    assert_eq!(old.bytes, b"records");
    let back = Frame::decode(old.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.producers, None);
    assert_eq!(
        Frame {
            producers: Some(table.into()),
            ..back
        },
        new
    );
}

/// Through a real stream (a replica service on loopback, the primary's replication running
/// embedded): a table that claims records the replica does not hold yet (the primary's table is
/// ahead of what the replica has, as for a lagging asynchronous replica) is not stored; once
/// the replica holds them it is, byte for byte what the primary wrote.
#[cfg(feature = "replication")]
#[test]
fn a_lagging_replica_stores_the_table_only_once_it_holds_what_it_claims() {
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
    let queue = a.join("q");
    let mut q = JournalQueue::<Job>::new(&queue, 1_000_000).unwrap();
    for id in 0..5 {
        q.enqueue(&Job { id }).unwrap();
    }
    // Producer p's records are 0..8: three of them are not written yet.
    let ahead = TableFile {
        version: VERSION,
        producers: [("p".to_string(), state(1, 8, Some(7)))].into(),
        ..TableFile::default()
    };
    ahead.store(&queue.join(PRODUCERS_FILE)).unwrap();
    let secondary = format!("b=127.0.0.1:{port}");
    let _replication = EmbeddedReplication::start(
        &queue,
        "a",
        &[secondary.as_str()],
        PrimaryOptions::new("a", Vec::new(), ReplicationMode::Asynchronous),
    )
    .unwrap();
    let replica = b.join("q");
    let stored = replica.join(REPLICA_PRODUCERS_FILE);
    let held = |n: u64| {
        crate::RawTailer::open(&replica, Some(0)).is_ok_and(|mut t| {
            let mut count = 0;
            while let Ok(Some(_)) = t.try_next() {
                count += 1;
            }
            count == n
        })
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait("the replica holds 5 records", &|| held(5));
    // The table came with those frames; the replica holds records 0..5 only.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!stored.exists(), "a table claiming records 5..8 was stored");
    for id in 5..8 {
        q.enqueue(&Job { id }).unwrap();
    }
    wait("the replica holds 8 records", &|| held(8));
    wait("the replica stores the table", &|| stored.exists());
    assert_eq!(TableFile::read(&stored).unwrap(), Some(ahead));
}
