use std::path::Path;

use super::*;
use crate::QueueOptions;
use crate::journal::format::*;

#[crate::message(name = "test.Blob")]
#[derive(Debug, Clone, PartialEq)]
struct Blob {
    n: u64,
    data: Vec<u8>,
}

fn blob(n: u64) -> Blob {
    Blob {
        n,
        data: vec![n as u8; (n as usize * 37) % 700],
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

/// Copies every final frame from `source` into `sink`; returns the number of frames.
fn pump(source: &mut ByteSource, sink: &mut ByteSink) -> usize {
    let mut frames = 0;
    while let Some(f) = source.read(8192, u64::MAX).unwrap() {
        sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
        frames += 1;
    }
    sink.sync().unwrap();
    frames
}

fn setup() -> (tempfile::TempDir, crate::JournalQueue<Blob>, Arc<Journal>) {
    let dir = tempfile::tempdir().unwrap();
    let primary = QueueOptions::new()
        .segment_size(64 << 10)
        .max_message_size(4096)
        .index_interval(16)
        .create::<Blob>(dir.path().join("primary"))
        .unwrap();
    let (replica, _) = Journal::create_or_open(
        &dir.path().join("replica"),
        primary.journal().config(),
        false,
        crate::journal::InitialPolicy::Inherit,
    )
    .unwrap();
    (dir, primary, replica)
}

#[test]
fn replica_files_are_byte_identical_and_readable() {
    let (dir, mut primary, replica) = setup();
    for n in 0..3000 {
        primary.enqueue(&blob(n)).unwrap();
    }
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    assert!(pump(&mut source, &mut sink) > 1);
    let f = ByteSource::at(primary.journal().clone(), 10)
        .unwrap()
        .read(1 << 20, 5)
        .unwrap()
        .unwrap();
    assert_eq!(f.records.len(), 5, "max_records bounds a frame");
    assert_eq!(frame_records(&f.bytes).unwrap(), f.records);
    assert_eq!(sink.next_seq(), 3000);
    let (p, r) = (
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica")),
    );
    assert!(p.len() > 3, "several segments: {}", p.len());
    assert_eq!(p, r, "segment files are byte-identical");

    // Resume from what the replica holds, in a new sink and a new source.
    for n in 3000..3500 {
        primary.enqueue(&blob(n)).unwrap();
    }
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    assert_eq!(sink.next_seq(), 3000);
    assert!(sink.held_crc(2999).is_some());
    assert_eq!(sink.held_crc(3000), None);
    let mut source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
    pump(&mut source, &mut sink);
    assert_eq!(sink.next_seq(), 3500);
    assert_eq!(
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica"))
    );

    // The replica's queue reads every message, in place and validated.
    let mut reader = QueueOptions::new()
        .open::<Blob>(dir.path().join("replica"))
        .unwrap();
    for n in 0..3500 {
        assert_eq!(reader.dequeue().unwrap(), Some(blob(n)));
    }
    assert_eq!(reader.dequeue().unwrap(), None);
}

/// Issue 10 item 0: a sink that is caught up when the source's segment rolls over. The END
/// marker of the full segment then travels alone, in a frame without records, which the
/// receiver must apply all the same (it used to be acknowledged as a duplicate and dropped,
/// and the next segment's first frame was refused for ever). Small and large messages; the
/// sink and source are reopened exactly at some rolls, before and after the END frame.
#[test]
fn a_caught_up_sink_follows_every_roll() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = QueueOptions::new()
        .segment_size(8192)
        .max_message_size(2048)
        .index_interval(8)
        .create::<Blob>(dir.path().join("primary"))
        .unwrap();
    let (replica, _) = Journal::create_or_open(
        &dir.path().join("replica"),
        primary.journal().config(),
        false,
        crate::journal::InitialPolicy::Inherit,
    )
    .unwrap();
    let big = |n: u64| Blob {
        n,
        data: vec![
            n as u8;
            if n % 5 == 2 {
                1500
            } else {
                (n as usize * 13) % 90
            }
        ],
    };
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    let (mut rolls, mut record_less, mut segments) = (0, 0, 0);
    for n in 0..600u64 {
        primary.enqueue(&big(n)).unwrap();
        let now = primary.journal().list_segments().unwrap().len();
        let rolled = segments > 0 && now > segments;
        segments = now;
        if rolled {
            rolls += 1;
            if rolls % 3 == 1 {
                // Reopened holding the last record of the full segment, without its END.
                sink = ByteSink::open(replica.clone()).unwrap();
                source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
            }
        }
        let mut first = true;
        while let Some(f) = source.read(1 << 20, u64::MAX).unwrap() {
            assert_eq!(frame_records(&f.bytes).unwrap(), f.records);
            if f.records.is_empty() {
                record_less += 1;
            }
            sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
            if rolled && first && rolls % 3 == 2 {
                // Reopened right after the END frame: the full segment is complete.
                sink.sync().unwrap();
                sink = ByteSink::open(replica.clone()).unwrap();
                source = ByteSource::at(primary.journal().clone(), sink.next_seq()).unwrap();
            }
            first = false;
        }
        sink.sync().unwrap();
        assert_eq!(sink.next_seq(), n + 1, "caught up after record {n}");
    }
    assert!(rolls > 10, "rolled {rolls} times");
    assert!(
        record_less >= rolls / 2,
        "END markers travel alone when the sink is caught up ({record_less} of {rolls})"
    );
    assert_eq!(
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica"))
    );
    let mut reader = QueueOptions::new()
        .open::<Blob>(dir.path().join("replica"))
        .unwrap();
    for n in 0..600 {
        assert_eq!(reader.dequeue().unwrap(), Some(big(n)));
    }
}

#[test]
fn empty_journals_are_not_given_an_empty_segment() {
    let (dir, mut primary, replica) = setup();
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    assert_eq!(source.read(8192, u64::MAX).unwrap(), None);
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    assert_eq!(sink.next_seq(), 0);
    assert!(files(&dir.path().join("primary")).is_empty());
    assert!(files(&dir.path().join("replica")).is_empty());
    // The first record creates the first segment; the source then finds it.
    primary.enqueue(&blob(1)).unwrap();
    assert_eq!(pump(&mut source, &mut sink), 1);
    assert_eq!(sink.next_seq(), 1);
    assert_eq!(
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica"))
    );
}

#[test]
fn duplicates_are_skipped_gaps_and_bad_checksums_refused() {
    let (_dir, mut primary, replica) = setup();
    for n in 0..50 {
        primary.enqueue(&blob(n)).unwrap();
    }
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let first = source.read(2000, u64::MAX).unwrap().unwrap();
    let second = source.read(2000, u64::MAX).unwrap().unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();

    // A gap: the second frame before the first.
    let err = sink
        .apply(second.segment_first_seq, second.offset, &second.bytes)
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Replication(repliq_err) if repliq_err.to_string().contains("gap")),
        "{err}"
    );
    sink.apply(first.segment_first_seq, first.offset, &first.bytes)
        .unwrap();
    let held = sink.next_seq();
    // The same frame again: skipped.
    sink.apply(first.segment_first_seq, first.offset, &first.bytes)
        .unwrap();
    assert_eq!(sink.next_seq(), held);

    // A flipped payload byte: refused with the record's checksum, nothing published.
    let mut bad = second.bytes.to_vec();
    bad[RECORD_HEADER + 1] ^= 0x40;
    let err = sink
        .apply(second.segment_first_seq, second.offset, &bad)
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Corrupt { reason, .. } if reason.contains("fails its checksum")),
        "{err}"
    );
    assert_eq!(sink.next_seq(), held);
    sink.apply(second.segment_first_seq, second.offset, &second.bytes)
        .unwrap();
    assert_eq!(sink.next_seq(), held + second.records.len() as u64);

    // Different bytes over what is held: refused.
    let mut changed = first.bytes.to_vec();
    changed[RECORD_HEADER] ^= 1;
    let err = sink
        .apply(first.segment_first_seq, first.offset, &changed)
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Replication(repliq_err) if repliq_err.to_string().contains("differ")),
        "{err}"
    );
}

#[test]
fn moved_aside_suffix_leaves_the_journal_at_the_cut() {
    let (dir, mut primary, replica) = setup();
    for n in 0..2000 {
        primary.enqueue(&blob(n)).unwrap();
    }
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    pump(&mut source, &mut sink);
    let aside = move_aside_from(&replica, 700, 2).unwrap();
    assert!(aside.ends_with("moved-aside/epoch-2-from-700"));
    let sink = ByteSink::open(replica.clone()).unwrap();
    assert_eq!(sink.next_seq(), 700);
    // The moved files hold everything that was there, and the tools read them as a queue.
    let moved = files(&aside);
    assert!(!moved.is_empty());
    let info = crate::inspect(&aside).unwrap();
    assert_eq!(info.last_seq, Some(1999), "{info:?}");
    let mut tailer = crate::RawTailer::open(&aside, Some(700)).unwrap();
    let mut primary_reader = crate::RawTailer::open(dir.path().join("primary"), Some(700)).unwrap();
    for n in 700..2000 {
        let rec = tailer.try_next().unwrap().unwrap();
        assert_eq!(rec.seq, n);
        assert_eq!(
            rec.payload,
            primary_reader.try_next().unwrap().unwrap().payload
        );
    }
    assert!(tailer.try_next().unwrap().is_none());
    let mut reader = QueueOptions::new()
        .open::<Blob>(dir.path().join("replica"))
        .unwrap();
    for n in 0..700 {
        assert_eq!(reader.dequeue().unwrap(), Some(blob(n)));
    }
    assert_eq!(reader.dequeue().unwrap(), None, "nothing after the cut");
    // The replica's files equal the primary's prefix up to the cut: re-pumping from 700
    // makes them identical again.
    let mut sink = sink;
    let mut source = ByteSource::at(primary.journal().clone(), 700).unwrap();
    pump(&mut source, &mut sink);
    assert_eq!(
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica"))
    );
}

/// An open consumer positioned at the cut (its cursor is not past it, so no rewind moves it)
/// still maps the replaced segment file: it must read the new primary's records from the cut
/// on, not the moved ones from its old mapping (fault-schedule seed 24, asynchronous).
#[test]
fn an_open_consumer_at_the_cut_reads_the_new_primarys_records() {
    let (dir, mut primary, replica) = setup();
    for n in 0..1000 {
        primary.enqueue(&blob(n)).unwrap();
    }
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    pump(&mut source, &mut sink);
    drop(sink);
    // The consumer reads up to the cut; its reader keeps the segment mapped.
    let mut consumer = QueueOptions::new()
        .consumer("app")
        .open::<Blob>(dir.path().join("replica"))
        .unwrap();
    for n in 0..700 {
        assert_eq!(consumer.dequeue().unwrap(), Some(blob(n)));
    }
    move_aside_from(&replica, 700, 2).unwrap();
    // The new primary: the same records up to the cut, others from there.
    let mut newer = QueueOptions::new()
        .segment_size(64 << 10)
        .max_message_size(4096)
        .index_interval(16)
        .create::<Blob>(dir.path().join("newer"))
        .unwrap();
    for n in 0..700 {
        newer.enqueue(&blob(n)).unwrap();
    }
    for n in 700..760 {
        newer.enqueue(&blob(n + 5000)).unwrap();
    }
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    let mut source = ByteSource::at(newer.journal().clone(), 700).unwrap();
    pump(&mut source, &mut sink);
    for n in 700..760 {
        assert_eq!(
            consumer.dequeue().unwrap(),
            Some(blob(n + 5000)),
            "record {n}: the moved record from the old mapping"
        );
    }
    assert_eq!(consumer.dequeue().unwrap(), None);
}

/// Payload bytes of every record `from..to` that `reader` (at `from`) finds, checked against
/// the primary's: the reader verifies each checksum.
fn read_like_primary(reader: &mut crate::journal::Reader, primary: &Arc<Journal>, to: u64) {
    let mut theirs = crate::journal::Reader::at(primary.clone(), reader.seq(), true).unwrap();
    while reader.seq() < to {
        let seq = reader.seq();
        let mine = reader
            .peek()
            .unwrap()
            .expect("an applied record is visible");
        let want = theirs.peek().unwrap().unwrap();
        assert_eq!((mine.seq(), mine.crc()), (seq, want.crc()), "record {seq}");
        assert_eq!(mine.payload(), want.payload(), "record {seq}");
        reader.advance(&mine);
        theirs.advance(&want);
    }
}

/// The sink's sync first drops this process's mappings of the pages it synced
/// (`MADV_DONTNEED`, one TLB flush instead of one per page in the write-back). Readers of the
/// same mappings (the replica's `Journal`, which its local consumers share) still see every
/// record: one that read the pages before the sync, one that follows the sink as it applies,
/// and a new one after the last sync; and the files stay byte-identical. Several segments, so
/// that the sink also writes into spares it prepared without faulting them in.
#[test]
fn readers_of_the_sinks_mappings_see_every_record_across_syncs() {
    let (dir, mut primary, replica) = setup();
    let mut source = ByteSource::at(primary.journal().clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    let mut follower = None;
    let mut early = None;
    for round in 0..8u64 {
        for n in round * 400..(round + 1) * 400 {
            primary.enqueue(&blob(n)).unwrap();
        }
        while let Some(f) = source.read(8192, u64::MAX).unwrap() {
            sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
        }
        let held = sink.next_seq();
        assert_eq!(held, (round + 1) * 400);
        // Applied, not synced yet: read through the sink's mappings.
        let follower = follower
            .get_or_insert_with(|| crate::journal::Reader::at(replica.clone(), 0, true).unwrap());
        read_like_primary(follower, primary.journal(), held);
        if round == 2 {
            early = Some(crate::journal::Reader::at(replica.clone(), 0, true).unwrap());
            read_like_primary(early.as_mut().unwrap(), primary.journal(), 600);
        }
        sink.sync().unwrap();
    }
    assert!(
        replica.list_segments().unwrap().len() > 3,
        "the sink rolled into several segments"
    );
    // After the syncs dropped the pages: the early reader resumes, a new one reads it all.
    read_like_primary(early.as_mut().unwrap(), primary.journal(), 3200);
    let mut fresh = crate::journal::Reader::at(replica.clone(), 0, true).unwrap();
    read_like_primary(&mut fresh, primary.journal(), 3200);
    assert!(
        fresh.peek().unwrap().is_none(),
        "nothing past the last record"
    );
    assert_eq!(
        files(&dir.path().join("primary")),
        files(&dir.path().join("replica"))
    );
}
