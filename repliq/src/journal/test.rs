//! Unit tests of the journal: round trips, concurrent appenders, the commit/abandon protocol
//! against dead and stalled writers, and crafted damage (torn tail, bad crc, truncated segment,
//! zeroed meta, random bytes).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::files::{STALE_TEMP_FILE_AGE, remove_stale_temp_files};
use super::format::*;
use super::header::{self, State};
use super::meta::MetaConfig;
use super::*;
use crate::raw::clock::monotonic_millis;

fn config(segment_size: u64) -> MetaConfig {
    MetaConfig {
        type_name: "test.Bytes".into(),
        fingerprint: 0x1234,
        segment_size,
        capacity: u64::MAX,
        index_interval: 8,
        max_payload: 1024,
        lease_ms: 50,
        created_unix_nanos: 1,
    }
}

fn journal(dir: &Path, segment_size: u64) -> Arc<Journal> {
    Journal::create_or_open(dir, &config(segment_size), false, InitialPolicy::Inherit)
        .unwrap()
        .0
}

fn append(app: &mut Appender, bytes: &[u8]) -> crate::Result<u64> {
    app.append(|slot| {
        if slot.len() < bytes.len() {
            return Err(crate::QueueError::Serialization {
                type_name: "bytes",
                reason: format!("{} bytes do not fit {}", bytes.len(), slot.len()),
            });
        }
        for (d, s) in slot.iter_mut().zip(bytes) {
            d.write(*s);
        }
        Ok(bytes.len())
    })
}

fn read_all(j: &Arc<Journal>) -> crate::Result<Vec<(u64, Vec<u8>)>> {
    let mut r = Reader::at(j.clone(), 0, true)?;
    let mut out = Vec::new();
    while let Some(rec) = r.peek()? {
        assert_eq!(
            rec.payload().as_ptr() as usize % 16,
            0,
            "payloads are 16-aligned"
        );
        out.push((rec.seq(), rec.payload().to_vec()));
        r.advance(&rec);
    }
    Ok(out)
}

fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 90) as usize;
    (0..len).map(|k| (i as usize + k) as u8).collect()
}

#[test]
fn records_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..400 {
        assert_eq!(append(&mut app, &payload(i)).unwrap(), i);
    }
    let all = read_all(&j).unwrap();
    assert_eq!(all.len(), 400);
    for (i, (seq, bytes)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(*bytes, payload(i as u64));
    }
    assert!(
        j.list_segments().unwrap().len() > 3,
        "rolled over several segments"
    );
    let report = verify(dir.path(), |_, _| {}).unwrap();
    assert_eq!(report.records, 400);
    let info = inspect(dir.path()).unwrap();
    assert_eq!(info.last_seq, Some(399));
    assert_eq!(info.type_name, "test.Bytes");

    // A new appender (as after a restart) finds the tail from the index.
    let mut again =
        Appender::new(Journal::open(dir.path(), false).unwrap(), Durability::Sync).unwrap();
    assert_eq!(append(&mut again, b"after reopen").unwrap(), 400);
    again.flush().unwrap();
}

#[test]
fn seek_by_index_matches_walk() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..300 {
        append(&mut app, &payload(i)).unwrap();
    }
    for target in [0, 1, 7, 8, 9, 63, 64, 150, 299] {
        let mut r = Reader::at(j.clone(), target, true).unwrap();
        let rec = r.peek().unwrap().unwrap();
        assert_eq!(rec.seq(), target);
        assert_eq!(rec.payload(), payload(target).as_slice());
    }
    let mut r = Reader::at(j.clone(), 300, true).unwrap();
    assert!(r.peek().unwrap().is_none(), "nothing at the tail yet");
}

#[test]
fn concurrent_appenders_get_dense_unique_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 16384);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut app = Appender::new(j, Durability::PageCache).unwrap();
                for i in 0..1500u32 {
                    let mut msg = vec![t];
                    msg.extend_from_slice(&i.to_le_bytes());
                    append(&mut app, &msg).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = read_all(&j).unwrap();
    assert_eq!(all.len(), 6000);
    let mut next = [0u32; 4];
    for (i, (seq, bytes)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        let t = bytes[0] as usize;
        let n = u32::from_le_bytes(bytes[1..5].try_into().unwrap());
        assert_eq!(n, next[t], "per-producer order");
        next[t] += 1;
    }
    assert_eq!(next, [1500; 4]);
}

/// Position and header word of the tail (the first EMPTY header).
fn tail_word(j: &Arc<Journal>) -> (Arc<segment::Segment>, usize) {
    let list = j.list_segments().unwrap();
    let seg = j.segment(*list.last().unwrap()).unwrap().unwrap();
    let mut pos = seg.data_start;
    loop {
        let w = seg.header_word(pos).unwrap().load(Ordering::Acquire);
        match header::decode(w) {
            State::Empty => return (seg, pos),
            State::Committed { len } => pos += committed_extent(len as usize),
            State::Abandoned { extent } => pos += extent,
            s => panic!("unexpected {s:?}"),
        }
    }
}

#[test]
fn a_dead_writers_reservation_is_abandoned_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, b"one").unwrap();
    // A writer reserves the tail, writes half a record and dies (torn tail).
    let (seg, pos) = tail_word(&j);
    let word = seg.header_word(pos).unwrap();
    header::try_reserve(word, 256, monotonic_millis()).unwrap();
    // SAFETY: this test owns the reservation it just made; nothing reads the extent.
    #[allow(unsafe_code)]
    unsafe { seg.map.write(pos + RECORD_HEADER, &[0xAB; 100]) }.unwrap();
    // Readers never see it; the next append waits for the lease (50 ms) and then goes on.
    assert_eq!(read_all(&j).unwrap().len(), 1);
    assert_eq!(append(&mut app, b"two").unwrap(), 1);
    let all = read_all(&j).unwrap();
    assert_eq!(all, vec![(0, b"one".to_vec()), (1, b"two".to_vec())]);
    let report = verify(dir.path(), |_, _| {}).unwrap();
    assert_eq!((report.records, report.abandoned), (2, 1));
}

/// Plays a writer that reserved `extent` bytes at the tail 10 s ago and stalled: returns its
/// segment, the record's offset and the reserved header word it would commit against.
fn reserve_stale_tail(j: &Arc<Journal>, extent: usize) -> (Arc<segment::Segment>, usize, u64) {
    let (seg, pos) = tail_word(j);
    let word = seg.header_word(pos).unwrap();
    let stale = monotonic_millis().wrapping_sub(10_000);
    let reserved = header::try_reserve(word, extent, stale).unwrap();
    (seg, pos, reserved)
}

#[test]
fn a_stalled_writer_cannot_commit_after_being_abandoned() {
    // Chronicle-Queue#629: the stalled writer resumes after its reservation was taken over.
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, b"first").unwrap();
    let (seg, pos, reserved) = reserve_stale_tail(&j, 128);
    let word = seg.header_word(pos).unwrap();
    // Another producer abandons the expired reservation and appends after its extent.
    assert_eq!(append(&mut app, b"next").unwrap(), 1);
    // The stalled writer wakes up and tries to publish: it must lose.
    assert!(!header::commit(word, reserved, 10));
    assert_eq!(
        read_all(&j).unwrap(),
        vec![(0, b"first".to_vec()), (1, b"next".to_vec())]
    );
    assert_eq!(
        header::decode(word.load(Ordering::Acquire)),
        State::Abandoned { extent: 128 }
    );
}

#[test]
fn a_message_too_large_is_refused_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    let err = append(&mut app, &[1u8; 2000]).unwrap_err();
    assert!(
        matches!(err, crate::QueueError::Serialization { .. }),
        "{err}"
    );
    assert_eq!(append(&mut app, b"small").unwrap(), 0);
    assert_eq!(read_all(&j).unwrap(), vec![(0, b"small".to_vec())]);
}

fn corrupt_at(err: crate::QueueError) -> (std::path::PathBuf, u64, String) {
    match err {
        crate::QueueError::Corrupt {
            path,
            offset,
            reason,
        } => (path, offset, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_bad_checksum_in_the_middle_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..10 {
        append(&mut app, &[i as u8; 40]).unwrap();
    }
    let mut r = Reader::at(j.clone(), 5, true).unwrap();
    let rec = r.peek().unwrap().unwrap();
    let (path, pos) = (rec.segment().path.clone(), rec.pos());
    drop((r, rec));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xFF], (pos + RECORD_HEADER + 3) as u64)
        .unwrap();

    let err = read_all(&j).unwrap_err();
    let (p, offset, reason) = corrupt_at(err);
    assert_eq!((p.as_path(), offset), (path.as_path(), pos as u64));
    assert!(reason.contains("checksum mismatch in record 5"), "{reason}");
    let err = verify(dir.path(), |_, _| {}).unwrap_err();
    assert_eq!(corrupt_at(err).1, pos as u64);
    assert!(
        err_string(verify(dir.path(), |_, _| {})).contains("corrupt queue file"),
        "message names the problem"
    );
}

fn err_string<T: std::fmt::Debug>(r: crate::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn an_invalid_header_word_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, b"ok").unwrap();
    let (seg, pos) = tail_word(&j);
    let path = seg.path.clone();
    drop(seg);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&u64::MAX.to_le_bytes(), pos as u64)
        .unwrap();
    let (p, offset, reason) = corrupt_at(read_all(&j).unwrap_err());
    assert_eq!((p, offset), (path, pos as u64));
    assert!(reason.contains("invalid record header word"), "{reason}");
    // A committed header whose length runs past the segment end.
    file.write_all_at(&header::committed(1 << 30).to_le_bytes(), pos as u64)
        .unwrap();
    let (_, _, reason) = corrupt_at(read_all(&j).unwrap_err());
    assert!(reason.contains("runs past the end"), "{reason}");
    assert!(
        append(&mut app, b"x").is_err(),
        "the appender refuses to write past damage"
    );
}

/// A writer dies holding a reservation that covers the rest of a segment: after its lease the
/// segment is finished, and the next record starts a new segment named by its own sequence number
/// (segments are created with their first record inside, so they are never empty).
#[test]
fn an_abandoned_reservation_to_the_end_of_a_segment_rolls_over() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, b"zero").unwrap();
    let (seg, pos) = tail_word(&j);
    let word = seg.header_word(pos).unwrap();
    let stale = monotonic_millis().wrapping_sub(10_000);
    header::try_reserve(word, seg.size - pos, stale).unwrap();
    drop(seg);
    // Both a fresh appender and the old one get past it.
    let mut fresh = Appender::new(j.clone(), Durability::PageCache).unwrap();
    assert_eq!(append(&mut fresh, b"one").unwrap(), 1);
    assert_eq!(append(&mut app, b"two").unwrap(), 2);
    assert_eq!(j.list_segments().unwrap(), vec![0, 1]);
    let all = read_all(&j).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(verify(dir.path(), |_, _| {}).unwrap().abandoned, 1);
}

#[test]
fn an_empty_queue_has_no_segment_until_the_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    assert!(j.list_segments().unwrap().is_empty());
    let mut r = Reader::at(j.clone(), 0, true).unwrap();
    assert!(r.peek().unwrap().is_none());
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    assert_eq!(app.next_seq().unwrap(), 0);
    assert_eq!(append(&mut app, b"x").unwrap(), 0);
    assert_eq!(
        r.peek().unwrap().unwrap().payload(),
        b"x",
        "the waiting reader finds it"
    );
    let info = inspect(dir.path()).unwrap();
    assert_eq!(info.last_seq, Some(0));
}

#[test]
fn a_truncated_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    append(
        &mut Appender::new(j.clone(), Durability::PageCache).unwrap(),
        b"a",
    )
    .unwrap();
    drop(j);
    let seg = dir.path().join(segment::segment_name(0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(100)
        .unwrap();
    let j = Journal::open(dir.path(), false).unwrap();
    let (p, offset, reason) = corrupt_at(Reader::at(j, 0, true).unwrap_err());
    assert_eq!((p, offset), (seg, 100));
    assert!(reason.contains("segment file is 100 bytes"), "{reason}");
}

#[test]
fn a_zeroed_meta_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(journal(dir.path(), 8192));
    let meta = dir.path().join(META_FILE);
    std::fs::write(&meta, vec![0u8; META_SIZE]).unwrap();
    let (p, offset, reason) = corrupt_at(Journal::open(dir.path(), false).unwrap_err());
    assert_eq!((p, offset), (meta, 0));
    assert!(reason.contains("bad magic"), "{reason}");
}

#[test]
fn a_meta_file_with_a_flipped_bit_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(journal(dir.path(), 8192));
    let meta = dir.path().join(META_FILE);
    let file = std::fs::OpenOptions::new().write(true).open(&meta).unwrap();
    file.write_all_at(&[0x55], M_CAPACITY as u64).unwrap();
    let (_, offset, reason) = corrupt_at(Journal::open(dir.path(), false).unwrap_err());
    assert_eq!(offset, M_CRC as u64);
    assert!(reason.contains("checksum mismatch"), "{reason}");
}

#[test]
fn files_of_random_bytes_are_corrupt_never_a_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(META_FILE), random(META_SIZE)).unwrap();
        assert!(matches!(
            Journal::open(dir.path(), false),
            Err(crate::QueueError::Corrupt { .. })
        ));
        std::fs::write(dir.path().join(META_FILE), random(10)).unwrap();
        assert!(matches!(
            Journal::open(dir.path(), false),
            Err(crate::QueueError::Corrupt { .. })
        ));
    }
    // A valid meta file with a segment of random bytes.
    let dir = tempfile::tempdir().unwrap();
    drop(journal(dir.path(), 8192));
    std::fs::write(dir.path().join(segment::segment_name(0)), random(8192)).unwrap();
    let j = Journal::open(dir.path(), false).unwrap();
    assert!(matches!(
        Reader::at(j, 0, true),
        Err(crate::QueueError::Corrupt { .. })
    ));
    assert!(verify(dir.path(), |_, _| {}).is_err());
    // Random bytes after a valid segment header: header words are garbage.
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    append(
        &mut Appender::new(j.clone(), Durability::PageCache).unwrap(),
        b"a",
    )
    .unwrap();
    drop(j);
    let seg = dir.path().join(segment::segment_name(0));
    let (_, data_start) = segment_geometry(8192, 8);
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&random(8192 - data_start), data_start as u64)
        .unwrap();
    let j = Journal::open(dir.path(), false).unwrap();
    let r = Reader::at(j.clone(), 0, true).and_then(|mut r| {
        while let Some(rec) = r.peek()? {
            r.advance(&rec);
        }
        Ok(())
    });
    assert!(matches!(r, Err(crate::QueueError::Corrupt { .. })), "{r:?}");
}

#[test]
fn purge_deletes_only_segments_every_cursor_passed() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..400 {
        append(&mut app, &payload(i)).unwrap();
    }
    let before = j.list_segments().unwrap();
    assert_eq!(
        j.purge_consumed().unwrap(),
        0,
        "cursor at 0 holds everything"
    );
    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    assert_eq!(j.purge_consumed().unwrap(), 2);
    assert_eq!(j.list_segments().unwrap(), before[2..].to_vec());
    let mut r = Reader::at(j.clone(), before[2], true).unwrap();
    assert_eq!(r.peek().unwrap().unwrap().seq(), before[2]);
}

#[test]
fn cursor_registration_finds_existing_names() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let a = cursor::register(&j.meta, "alpha", || Ok(5)).unwrap();
    let b = cursor::register(&j.meta, "beta", || Ok(0)).unwrap();
    assert_ne!(a, b);
    assert_eq!(cursor::register(&j.meta, "alpha", || Ok(0)).unwrap(), a);
    assert_eq!(j.meta.load_cursor(a), 5);
    assert_eq!(cursor::min_position(&j.meta), Some(0));
    assert!(cursor::remove(&j.meta, "beta"));
    assert_eq!(cursor::min_position(&j.meta), Some(5));
    assert!(cursor::find(&j.meta, "beta").is_none());
    let err = cursor::register(&j.meta, "", || Ok(0)).unwrap_err();
    assert!(err.to_string().contains("must be 1 to 40 bytes"), "{err}");
    for i in 0..CURSOR_SLOTS {
        let r = cursor::register(&j.meta, &format!("c{i}"), || Ok(0));
        if i >= CURSOR_SLOTS - 2 {
            let err = r.unwrap_err();
            assert!(err.to_string().contains("consumer slots"), "{err}");
        }
    }
}

/// A registration stalled past the claim timeout (the process was descheduled, or stopped with
/// SIGSTOP, between its claim and its publication) resumes after another process has taken the
/// slot over and made it active. The stalled claimer must not overwrite that consumer's name or
/// cursor: it loses its publication and registers again.
#[test]
fn a_stalled_cursor_registration_never_overwrites_a_slot_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let home = cursor::find_home("bbb");
    // Process A claims the slot "bbb" will land in, for its own consumer "aaa", and stalls.
    let stale = monotonic_millis().wrapping_sub(cursor::CLAIM_TIMEOUT_MS + 5000);
    let claim = cursor::try_claim(&j.meta, home, stale).unwrap();
    // Process B registers "bbb" meanwhile: the claim has expired.
    let b = cursor::register(&j.meta, "bbb", || Ok(7)).unwrap();
    assert_eq!(cursor::find(&j.meta, "bbb"), Some(b));
    // A resumes where it stopped: its publication must fail and leave B's slot alone.
    assert!(!cursor::publish(&j.meta, home, claim, b"aaa", &|| Ok(99)).unwrap());
    assert_eq!(
        cursor::find(&j.meta, "bbb"),
        Some(b),
        "B's consumer survives"
    );
    assert_eq!(j.meta.cursor_name(b).as_bytes(), b"bbb");
    assert_eq!(j.meta.load_cursor(b), 7, "B's cursor is not overwritten");
    assert_eq!(cursor::find(&j.meta, "aaa"), None);
    // A registers again and gets a slot of its own.
    let a = cursor::register(&j.meta, "aaa", || Ok(99)).unwrap();
    assert_ne!(a, b);
    let mut all = cursor::list(&j.meta);
    all.sort();
    assert_eq!(all, vec![("aaa".into(), 99), ("bbb".into(), 7)]);
}

/// A replica cursor stores the last record its replica holds (for retention); `inspect` (and
/// the daemon's `repliq_backlog_records`) report the next record it needs, so a replica that
/// holds everything has a backlog of 0, not 1.
#[test]
fn a_replica_holding_everything_has_no_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..5 {
        append(&mut app, &payload(i)).unwrap();
    }
    let slot = cursor::register_replica(&j.meta, "node-b", || Ok(0)).unwrap();
    let backlog = || {
        let info = inspect(dir.path()).unwrap();
        let c = info
            .cursors
            .iter()
            .find(|c| c.name == "replica:node-b")
            .unwrap()
            .clone();
        (c.next_seq, c.backlog)
    };
    // What `ReplicaCursors::held(name, next_seq)` stores: next_seq - 1.
    j.meta.cursor_next(slot).store(2, Ordering::Release);
    assert_eq!(backlog(), (3, 2), "holds 0..=2, needs 3 and 4");
    j.meta.cursor_next(slot).store(4, Ordering::Release);
    assert_eq!(backlog(), (5, 0), "holds everything");
    j.meta
        .cursor_next(slot)
        .store(cursor::RELEASED, Ordering::Release);
    assert_eq!(
        backlog(),
        (cursor::RELEASED, 0),
        "a lost replica holds nothing back"
    );
}

/// Parses a journal written by the code with nothing but the rules of `docs/FORMAT.md` (plain
/// file reads, no journal code), so the document and the code cannot drift apart silently.
#[test]
fn fixture_matches_format_md() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    cursor::register(&j.meta, "reader", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    let payloads: Vec<Vec<u8>> = (0..150u64).map(payload).collect();
    for p in &payloads {
        append(&mut app, p).unwrap();
    }
    drop((app, j));

    let le32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let align = |n: usize, a: usize| n.div_ceil(a) * a;

    // Meta file.
    let meta = std::fs::read(dir.path().join("queue.meta")).unwrap();
    assert_eq!(meta.len(), 8192);
    assert_eq!(&meta[0..8], b"RPLQMETA");
    assert_eq!(
        le32(&meta, 8),
        2,
        "meta format version 2: cursor slots carry generations"
    );
    assert_eq!(le32(&meta, 12), 8192);
    assert_eq!(le64(&meta, 16), 0x1234);
    let segment_size = le64(&meta, 24) as usize;
    assert_eq!(segment_size, 8192);
    let interval = le32(&meta, 40) as usize;
    let name_len = le32(&meta, 52) as usize;
    assert_eq!(&meta[64..64 + name_len], b"test.Bytes");
    assert_eq!(le32(&meta, 320), crc32c::crc32c(&meta[..320]));
    let home = {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in b"reader" {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % 64) as usize
    };
    let slot = &meta[1024 + 64 * home..1024 + 64 * (home + 1)];
    assert_eq!(le64(slot, 0), 2 << 32, "active");
    assert_eq!(le64(slot, 8), 0, "cursor");
    assert_eq!(le32(slot, 16) & 1, 1, "durable");
    assert_eq!(&slot[24..24 + le32(slot, 20) as usize], b"reader");

    // Segments: follow the chain from 00000000000000000000.seg.
    let mut seq = 0u64;
    let mut first = 0u64;
    let mut got = Vec::new();
    loop {
        let path = dir.path().join(format!("{first:020}.seg"));
        let Ok(seg) = std::fs::read(&path) else { break };
        assert_eq!(seg.len(), segment_size);
        assert_eq!(&seg[0..8], b"RPLQSEGM");
        assert_eq!(le32(&seg, 8), 1);
        assert_eq!(le64(&seg, 16), first);
        assert_eq!(le64(&seg, 24), segment_size as u64);
        assert_eq!(le64(&seg, 32), 0x1234);
        assert_eq!(le32(&seg, 40) as usize, interval);
        let entries = le32(&seg, 44) as usize;
        assert_eq!(entries, (segment_size / 32).div_ceil(interval));
        let data = le32(&seg, 12) as usize;
        assert_eq!(data, align(64 + 4 * entries, 64));
        assert_eq!(le32(&seg, 48), crc32c::crc32c(&seg[..48]));
        let mut pos = data;
        let mut next_segment = false;
        while pos + 32 <= segment_size {
            let word = le64(&seg, pos);
            let (tag, mid, low) = (word >> 61, (word >> 32) & ((1 << 29) - 1), word as u32);
            match tag {
                0 => break,
                2 => {
                    let len = low as usize;
                    assert_eq!(le64(&seg, pos + 8), seq);
                    assert_eq!(le32(&seg, pos + 20) as usize, len);
                    let time = le64(&seg, pos + 24);
                    let body = &seg[pos + 32..pos + 32 + len];
                    let mut crc_input = Vec::new();
                    crc_input.extend_from_slice(&seq.to_le_bytes());
                    crc_input.extend_from_slice(&(len as u32).to_le_bytes());
                    crc_input.extend_from_slice(&time.to_le_bytes());
                    crc_input.extend_from_slice(body);
                    assert_eq!(le32(&seg, pos + 16), crc32c::crc32c(&crc_input));
                    let rel = (seq - first) as usize;
                    if rel.is_multiple_of(interval) {
                        let entry = le32(&seg, 64 + 4 * (rel / interval)) as usize;
                        assert_eq!(entry, pos, "index entry of sequence {seq}");
                    }
                    got.push(body.to_vec());
                    seq += 1;
                    pos += align(32 + len, 16);
                }
                3 => pos += mid as usize * 16,
                4 => {
                    next_segment = true;
                    break;
                }
                other => panic!("tag {other} at {pos}"),
            }
        }
        if !next_segment && pos + 32 <= segment_size {
            break;
        }
        first = seq;
    }
    assert_eq!(got, payloads);
    assert!(first > 0, "the fixture spans several segments");
}

#[test]
fn rolls_use_the_spare_file_prepared_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    let mut i = 0;
    // Past half of segment 0 the appender asks for a spare; wait until it is ready.
    while j.list_segments().unwrap().len() < 2 {
        append(&mut app, &payload(i)).unwrap();
        i += 1;
        if i == 60 {
            for _ in 0..500 {
                if j.spare_ready() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(j.spare_ready(), "the spare was prepared");
        }
    }
    assert!(!j.spare_ready(), "the roll consumed the spare");
    let spares: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".spare"))
        .collect();
    assert!(spares.is_empty(), "the spare's temporary name is gone");
    for _ in 0..100 {
        append(&mut app, &payload(i)).unwrap();
        i += 1;
    }
    let all = read_all(&j).unwrap();
    assert_eq!(all.len() as u64, i);
    for (seq, bytes) in all {
        assert_eq!(bytes, payload(seq));
    }
    assert_eq!(verify(dir.path(), |_, _| {}).unwrap().records, i);
}

#[test]
fn stale_temporary_files_are_removed_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join(".spare-1-2-3");
    let fresh = dir.path().join(".tmp-4-5-6");
    let other = dir.path().join("keep.txt");
    for p in [&old, &fresh, &other] {
        std::fs::write(p, b"x").unwrap();
    }
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(past)
        .unwrap();
    remove_stale_temp_files(dir.path(), STALE_TEMP_FILE_AGE);
    assert!(!old.exists());
    assert!(fresh.exists());
    assert!(other.exists());
}

/// A queue of 400 records over several 8 KiB segments; returns the journal and the segments.
fn damaged_fixture(dir: &Path) -> (Arc<Journal>, Vec<u64>) {
    let j = journal(dir, 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..400 {
        append(&mut app, &payload(i)).unwrap();
    }
    let list = j.list_segments().unwrap();
    assert!(list.len() > 4);
    (j, list)
}

/// Reads everything a strict tool reader (as `repliq tail`) gets, until the first error.
fn tail_all(dir: &Path) -> crate::Result<u64> {
    let mut t = RawTailer::open(dir, None)?;
    let mut n = 0;
    while t.try_next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[test]
fn a_deleted_middle_segment_is_a_hole_everyone_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (j, list) = damaged_fixture(dir.path());
    drop(j);
    let missing = dir.path().join(segment::segment_name(list[2]));
    std::fs::remove_file(&missing).unwrap();
    let j = Journal::open(dir.path(), false).unwrap();

    // Readers (consumers) and the tail tool stop with an error naming the missing file.
    let (p, offset, reason) = corrupt_at(read_all(&j).unwrap_err());
    assert_eq!((p.as_path(), offset), (missing.as_path(), 0));
    assert!(reason.contains("segment file missing"), "{reason}");
    assert_eq!(corrupt_at(tail_all(dir.path()).unwrap_err()).0, missing);
    // A reader placed inside the hole too.
    let err = Reader::at(j.clone(), list[2] + 1, true).and_then(|mut r| r.peek());
    assert_eq!(corrupt_at(err.unwrap_err()).0, missing);
    // verify and inspect.
    assert_eq!(
        corrupt_at(verify(dir.path(), |_, _| {}).unwrap_err()).0,
        missing
    );
    let (_, _, reason) = corrupt_at(inspect(dir.path()).unwrap_err());
    assert!(reason.contains("missing"), "{reason}");
    // Producers refuse to append after the hole.
    let err = Appender::new(j.clone(), Durability::PageCache).unwrap_err();
    let (_, _, reason) = corrupt_at(err);
    assert!(reason.contains("missing"), "{reason}");
}

/// Finds the position of record `seq`.
fn position_of(j: &Arc<Journal>, seq: u64) -> (std::path::PathBuf, usize) {
    let mut r = Reader::at(j.clone(), seq, true).unwrap();
    let rec = r.peek().unwrap().unwrap();
    assert_eq!(rec.seq(), seq);
    (rec.segment().path.clone(), rec.pos())
}

fn damage_header(j: &Arc<Journal>, seq: u64, word: u64, whole: bool) -> (std::path::PathBuf, u64) {
    let (path, pos) = position_of(j, seq);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let bytes = if whole {
        let mut b = vec![0u8; RECORD_HEADER];
        b[..8].copy_from_slice(&word.to_le_bytes());
        b
    } else {
        word.to_le_bytes().to_vec()
    };
    file.write_all_at(&bytes, pos as u64).unwrap();
    (path, pos as u64)
}

#[test]
fn a_zeroed_or_ended_middle_header_is_a_hole_not_the_tail() {
    for (what, word, whole, seq_of) in [
        ("zeroed header in a middle segment", 0, true, 0usize),
        ("zeroed state word in the last segment", 0, false, 1),
        ("END in the last segment", header::END, false, 1),
        ("END in a middle segment", header::END, false, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (j, list) = damaged_fixture(dir.path());
        // A record in the middle of segment 1, or 3 records before the end of the last one.
        let seq = if seq_of == 0 { list[1] + 5 } else { 397 };
        let (path, offset) = damage_header(&j, seq, word, whole);
        drop(j);
        let j = Journal::open(dir.path(), false).unwrap();
        let check = |err: crate::QueueError, who: &str| {
            let (p, o, reason) = corrupt_at(err);
            assert!(
                p == path || o == 0,
                "{what}, {who}: names {} at {o}: {reason}",
                p.display()
            );
            if p == path {
                assert_eq!(o, offset, "{what}, {who}: {reason}");
            }
        };
        check(tail_all(dir.path()).unwrap_err(), "tail");
        check(verify(dir.path(), |_, _| {}).unwrap_err(), "verify");
        if seq_of == 1 {
            // `inspect` is the quick view: it walks the last segment from its last index point.
            check(inspect(dir.path()).unwrap_err(), "inspect");
        }
        if seq_of == 1 {
            // Recovery is bounded (last index point of each segment): it finds holes at the
            // tail and missing segments, not damage deep inside an older segment.
            check(
                Appender::new(j.clone(), Durability::PageCache).unwrap_err(),
                "appender",
            );
        }
        // A consumer that waits there longer than the reservation lease gets the error too.
        let mut r = Reader::at(j.clone(), 0, true).unwrap();
        let mut got = Ok(());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match r.peek() {
                Ok(Some(rec)) => r.advance(&rec),
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => {
                    got = Err(e);
                    break;
                }
            }
        }
        check(got.unwrap_err(), "consumer");
        assert_eq!(r.seq(), seq, "{what}: nothing before the hole is lost");
    }
}

#[test]
fn a_damaged_index_entry_never_makes_a_reader_write_into_a_payload() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    // Record 7's payload holds a stale-looking RESERVED word at a 16-aligned offset; record 8
    // (an index point, interval 8) is then pointed at it by a damaged index entry.
    let stale = header::reserved(64, monotonic_millis().wrapping_sub(100_000));
    let mut trap = vec![0u8; 64];
    trap[..8].copy_from_slice(&stale.to_le_bytes());
    for i in 0..7 {
        append(&mut app, &payload(i)).unwrap();
    }
    append(&mut app, &trap).unwrap();
    for i in 8..20 {
        append(&mut app, &payload(i)).unwrap();
    }
    let (path, pos7) = position_of(&j, 7);
    let seg = j.segment(0).unwrap().unwrap();
    seg.map
        .atomic_u32(S_INDEX + 4)
        .unwrap()
        .store((pos7 + RECORD_HEADER) as u32, Ordering::Release);
    let before = std::fs::read(&path).unwrap();
    for target in [8, 9, 12] {
        let mut r = Reader::at(j.clone(), target, true).unwrap();
        assert_eq!(r.peek().unwrap().unwrap().seq(), target);
    }
    assert_eq!(read_all(&j).unwrap().len(), 20);
    let mut again = Appender::new(j.clone(), Durability::PageCache).unwrap();
    assert_eq!(append(&mut again, b"x").unwrap(), 20);
    let after = std::fs::read(&path).unwrap();
    let end7 = pos7 + committed_extent(64);
    assert_eq!(before[..end7], after[..end7], "record 7 is untouched");
    assert_eq!(read_all(&j).unwrap()[7].1, trap);
}

#[test]
fn verify_reports_a_garbage_consumer_area() {
    let dir = tempfile::tempdir().unwrap();
    drop(journal(dir.path(), 8192));
    let meta = dir.path().join(META_FILE);
    let file = std::fs::OpenOptions::new().write(true).open(&meta).unwrap();
    file.write_all_at(&[0xA5; 64 * 3], (M_CURSORS + 64 * 5) as u64)
        .unwrap();
    let (p, offset, reason) = corrupt_at(verify(dir.path(), |_, _| {}).unwrap_err());
    assert_eq!((p, offset), (meta, (M_CURSORS + 64 * 5) as u64));
    assert!(reason.contains("consumer cursor slot 5"), "{reason}");
}

/// A primary journal with 8 KiB segments in `dir/primary` and an empty replica of it in
/// `dir/replica`.
fn primary_and_replica(dir: &Path) -> (Arc<Journal>, Arc<Journal>) {
    let j = journal(&dir.join("primary"), 8192);
    let (replica, _) = Journal::create_or_open(
        &dir.join("replica"),
        j.config(),
        false,
        InitialPolicy::Inherit,
    )
    .unwrap();
    (j, replica)
}

/// Issue 10 item 7: what "byte-identical" means for the one region a replica cannot copy. A writer
/// that stalled past its lease keeps writing inside its (now abandoned) extent after the extent
/// was shipped; the replica holds the extent's state word and zeros, and every other byte equals
/// the primary's.
#[test]
fn a_replica_holds_zeros_where_a_stalled_writer_scribbles_in_its_abandoned_extent() {
    use super::replica::{ByteSink, ByteSource};
    let dir = tempfile::tempdir().unwrap();
    let (j, replica) = primary_and_replica(dir.path());
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, b"first").unwrap();
    // A writer reserves 128 bytes, writes part of its payload and stalls past its lease.
    let (seg, pos, reserved) = reserve_stale_tail(&j, 128);
    let word = seg.header_word(pos).unwrap();
    // SAFETY: the test plays the stalled writer, which owns the extent it reserved.
    #[allow(unsafe_code)]
    unsafe { seg.map.write(pos + RECORD_HEADER, &[0xAB; 40]) }.unwrap();
    // Another producer abandons it and appends after it; the primary ships all of it.
    assert_eq!(append(&mut app, b"next").unwrap(), 1);
    let mut source = ByteSource::at(j.clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    let ship = |source: &mut ByteSource, sink: &mut ByteSink| {
        while let Some(f) = source.read(1 << 20, u64::MAX).unwrap() {
            sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
        }
        sink.sync().unwrap();
    };
    ship(&mut source, &mut sink);
    // The stalled writer wakes, writes its header fields and the rest, and loses the commit.
    // SAFETY: as above; after this it writes nothing more (its commit fails).
    #[allow(unsafe_code)]
    unsafe { seg.map.write(pos + 8, &[0xCD; 120]) }.unwrap();
    assert!(!header::commit(word, reserved, 100));
    assert_eq!(append(&mut app, b"last").unwrap(), 2);
    ship(&mut source, &mut sink);

    let name = segment::segment_name(0);
    let p = std::fs::read(dir.path().join("primary").join(&name)).unwrap();
    let r = std::fs::read(dir.path().join("replica").join(&name)).unwrap();
    assert_eq!(p.len(), r.len());
    let body = pos + 8..pos + 128;
    assert!(
        p[body.clone()].iter().all(|&b| b == 0xCD),
        "the primary holds the scribbles"
    );
    assert!(
        r[body.clone()].iter().all(|&b| b == 0),
        "the replica holds zeros"
    );
    assert_eq!(
        p[..body.start],
        r[..body.start],
        "identical before the abandoned body"
    );
    assert_eq!(p[body.end..], r[body.end..], "identical after it");
    assert_eq!(
        read_all(&replica).unwrap(),
        vec![
            (0, b"first".to_vec()),
            (1, b"next".to_vec()),
            (2, b"last".to_vec())
        ]
    );
}

#[test]
fn an_appender_that_fell_behind_retention_appends_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut idle = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut idle, &payload(0)).unwrap();
    // Another producer writes three more segments; consumers finish the first two; retention
    // deletes them, including the one after the idle appender's position.
    let mut busy = Appender::new(j.clone(), Durability::PageCache).unwrap();
    let mut n = 1;
    while j.list_segments().unwrap().len() < 4 {
        append(&mut busy, &payload(n)).unwrap();
        n += 1;
    }
    let before = j.list_segments().unwrap();
    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    assert_eq!(j.purge_consumed().unwrap(), 2);

    let seq = append(&mut idle, &payload(n)).unwrap();
    assert_eq!(
        seq, n,
        "the idle appender's record goes to the tail, after every other"
    );
    assert_eq!(
        j.list_segments().unwrap(),
        before[2..].to_vec(),
        "no segment re-created"
    );
    assert_eq!(check_payloads_from(&j, before[2]), n + 1);
}

#[test]
fn a_stale_producer_does_not_publish_a_segment_older_than_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    fill_segments(&j, &mut app, 3);
    let list = j.list_segments().unwrap();
    assert!(j.lock_segment_creation(list[1]).unwrap().is_none());
    drop(
        j.lock_segment_creation(list[2] + 1_000_000)
            .unwrap()
            .expect("a new tail"),
    );
}

/// Fills `j` with `payload(i)` records until it has `segments` segments; returns the count.
fn fill_segments(j: &Arc<Journal>, app: &mut Appender, segments: usize) -> u64 {
    let mut i = 0;
    while j.list_segments().unwrap().len() < segments {
        append(app, &payload(i)).unwrap();
        i += 1;
    }
    i
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn retention_recycles_the_newest_consumed_segment_into_the_next_one() {
    let dir = shm_dir();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    let mut n = fill_segments(&j, &mut app, 3);
    let before = j.list_segments().unwrap();
    let recycled = inode(&dir.path().join(segment::segment_name(before[1])));
    // A spare the appender asked for would take the recycled file's place: drop it.
    drop(j.take_spare(std::time::Duration::from_secs(10)));

    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    let spare = j.purge(true).unwrap().1.expect("no process maps segment 1");
    assert_eq!(j.list_segments().unwrap(), before[2..].to_vec());
    assert_eq!(
        inode(&spare.tmp),
        recycled,
        "the newest consumed segment is the spare"
    );
    let bytes = std::fs::read(&spare.tmp).unwrap();
    assert!(bytes.iter().all(|&b| b == 0), "the recycled file is zeroed");
    j.put_back_spare(spare);

    let segments = j.list_segments().unwrap().len();
    while j.list_segments().unwrap().len() == segments {
        append(&mut app, &payload(n)).unwrap();
        n += 1;
    }
    for _ in 0..50 {
        append(&mut app, &payload(n)).unwrap();
        n += 1;
    }
    let newest = *j.list_segments().unwrap().last().unwrap();
    assert_eq!(
        inode(&dir.path().join(segment::segment_name(newest))),
        recycled,
        "the roll used the recycled file"
    );
    assert_eq!(
        check_payloads_from(&j, before[2]),
        n,
        "every record after the consumed ones reads back intact"
    );
    assert_eq!(
        verify(dir.path(), |_, _| {}).unwrap().records,
        n - before[2]
    );
}

#[test]
fn a_consumed_segment_another_handle_maps_is_deleted_not_recycled() {
    let dir = shm_dir();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    fill_segments(&j, &mut app, 3);
    let before = j.list_segments().unwrap();
    drop(j.take_spare(std::time::Duration::from_secs(10)));
    // A tailer of another open (as in another process: its own mapping and lock) reading
    // history in segment 1.
    let other = Journal::open(dir.path(), false).unwrap();
    let mut tail = Reader::at(other, before[1], true).unwrap();
    assert_eq!(tail.peek().unwrap().unwrap().seq(), before[1]);

    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    assert!(
        j.purge(true).unwrap().1.is_none(),
        "a mapped segment is not recycled"
    );
    assert_eq!(
        j.list_segments().unwrap(),
        before[2..].to_vec(),
        "but deleted"
    );
    let mut seq = before[1];
    while seq < before[2] {
        let rec = tail.peek().unwrap().unwrap();
        assert_eq!((rec.seq(), rec.payload()), (seq, &payload(seq)[..]));
        tail.advance(&rec);
        seq += 1;
    }
}

/// A directory on tmpfs, where retention recycles segments.
fn shm_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").expect("tmpfs at /dev/shm")
}

#[test]
fn on_a_disk_retention_deletes_consumed_segments_instead_of_recycling_them() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    fill_segments(&j, &mut app, 3);
    let before = j.list_segments().unwrap();
    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    let probe = std::fs::File::open(dir.path().join(format::META_FILE)).unwrap();
    let (removed, spare) = j.purge(true).unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        spare.is_some(),
        crate::raw::on_tmpfs(&probe),
        "recycled only on tmpfs"
    );
}

/// Reads every record from `from` on, checking each is `payload(seq)`; returns the next seq.
fn check_payloads_from(j: &Arc<Journal>, from: u64) -> u64 {
    let mut r = Reader::at(j.clone(), from, true).unwrap();
    let mut next = from;
    while let Some(rec) = r.peek().unwrap() {
        assert_eq!((rec.seq(), rec.payload()), (next, &payload(next)[..]));
        r.advance(&rec);
        next += 1;
    }
    next
}

#[test]
fn a_tail_follower_behind_retention_moves_on_to_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    let slot = cursor::register(&j.meta, "c", || Ok(0)).unwrap();
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    append(&mut app, &payload(0)).unwrap();
    let mut follower = Reader::at(j.clone(), 0, true).unwrap();
    follower.walk_to_tail().unwrap();
    assert_eq!(follower.seq(), 1);
    let n = 1 + fill_segments(&j, &mut app, 4);
    let before = j.list_segments().unwrap();
    j.meta.cursor_next(slot).store(before[2], Ordering::Release);
    assert_eq!(j.purge_consumed().unwrap(), 2);
    follower.walk_to_tail().unwrap();
    assert_eq!(follower.seq(), n, "at the tail, past the deleted segments");
}

#[test]
fn wait_for_spare_waits_while_one_is_being_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 8192);
    assert!(
        j.wait_for_spare(std::time::Duration::ZERO),
        "nothing being prepared"
    );
    *j.spare.lock().unwrap() = SpareState::Preparing;
    assert!(
        !j.wait_for_spare(std::time::Duration::from_millis(20)),
        "still being prepared"
    );
    let preparer = {
        let j = j.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            *j.spare.lock().unwrap() = SpareState::None;
            j.spare_done.notify_all();
        })
    };
    assert!(
        j.wait_for_spare(std::time::Duration::from_secs(60)),
        "woken when done"
    );
    preparer.join().unwrap();
}

/// A replica's sink asks for the next segment's file at a quarter of the current one, as a
/// producer does, and rolls into it: no `fallocate` of a whole segment on the stream's path
/// (on tmpfs that allocates and zeroes every page). The copy stays byte-identical.
#[test]
fn a_replica_rolls_into_the_spare_file_prepared_in_the_background() {
    use super::replica::{ByteSink, ByteSource};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (j, replica) = primary_and_replica(dir.path());
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    while j.list_segments().unwrap().len() < 3 {
        append(&mut app, &[7u8; 200]).unwrap();
    }
    let mut source = ByteSource::at(j.clone(), 0).unwrap();
    let mut sink = ByteSink::open(replica.clone()).unwrap();
    let (mut rolls, mut current) = (0, None);
    while let Some(f) = source.read(512, u64::MAX).unwrap() {
        let rolling = current.is_some_and(|c| c != f.segment_first_seq);
        if rolling {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !replica.spare_ready() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                replica.spare_ready(),
                "no spare was prepared before the roll to segment {}",
                f.segment_first_seq
            );
        }
        sink.apply(f.segment_first_seq, f.offset, &f.bytes).unwrap();
        if rolling {
            assert!(!replica.spare_ready(), "the roll did not take the spare");
            rolls += 1;
        }
        current = Some(f.segment_first_seq);
    }
    sink.sync().unwrap();
    assert_eq!(rolls, 2);
    for first in j.list_segments().unwrap() {
        let name = segment::segment_name(first);
        let p = std::fs::read(dir.path().join("primary").join(&name)).unwrap();
        let r = std::fs::read(dir.path().join("replica").join(&name)).unwrap();
        assert!(p == r, "segment {first} differs");
    }
    assert_eq!(read_all(&replica).unwrap(), read_all(&j).unwrap());
}

/// Records 0..20 in a segment of 32 MiB (pre-allocated: the file system knows the rest is
/// unwritten; a read fault reads ahead up to `read_ahead_kb`, 8 MiB on some machines).
fn sparse_fixture(dir: &Path) -> Arc<Journal> {
    let j = journal(dir, 32 << 20);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..20 {
        append(&mut app, &payload(i)).unwrap();
    }
    j
}

#[test]
fn a_record_past_a_file_system_hole_is_found_by_the_tail_check() {
    let dir = tempfile::tempdir().unwrap();
    let j = sparse_fixture(dir.path());
    // Record 11 copied 24 MiB ahead (its header in the last 16 bytes of a page), then records
    // 10.. zeroed: the journal stops at 10, and a later record follows behind megabytes the
    // file system reports as a hole.
    let (path, pos10) = position_of(&j, 10);
    let (_, pos11) = position_of(&j, 11);
    let (_, pos12) = position_of(&j, 12);
    drop(j);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut record = vec![0u8; pos12 - pos11];
    file.read_exact_at(&mut record, pos11 as u64).unwrap();
    let far = (24u64 << 20) + 4096 - 16;
    file.write_all_at(&record, far).unwrap();
    file.write_all_at(&[0u8; 4096], pos10 as u64).unwrap();
    let j = Journal::open(dir.path(), false).unwrap();
    let (p, offset, reason) =
        corrupt_at(Appender::new(j.clone(), Durability::PageCache).unwrap_err());
    assert_eq!((p, offset), (path, pos10 as u64), "{reason}");
    assert!(
        reason.contains(&format!("record 11 follows at offset {far}")),
        "{reason}"
    );
}

#[test]
fn the_tail_check_does_not_read_the_unwritten_rest_of_a_segment() {
    // On tmpfs (no read-ahead, and a page read through a mapping becomes data), the rest of a
    // pre-allocated segment stays a hole only if nothing read it.
    let shm = Path::new("/dev/shm");
    let Ok(dir) = tempfile::tempdir_in(shm) else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let j = sparse_fixture(dir.path());
    let seg = j.segment(0).unwrap().unwrap();
    let rest = 16 << 20;
    if seg.next_data(rest).is_some() {
        eprintln!("skipped: /dev/shm does not report holes");
        return;
    }
    drop((seg, j));
    // An appender's open and a strict reader prove the tail: no record in the rest.
    let j = Journal::open(dir.path(), false).unwrap();
    drop(Appender::new(j.clone(), Durability::PageCache).unwrap());
    let mut r = Reader::at(j.clone(), 0, true).unwrap().strict();
    while let Some(rec) = r.peek().unwrap() {
        r.advance(&rec);
    }
    assert_eq!(r.seq(), 20);
    // ... without reading the 16 MiB the file system reports as a hole.
    let seg = j.segment(0).unwrap().unwrap();
    assert_eq!(
        seg.next_data(rest),
        None,
        "the tail check read the unwritten rest of the segment"
    );
}

#[test]
fn the_zero_skip_finds_a_header_word_at_any_distance_and_nothing_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), 1 << 20);
    let mut app = Appender::new(j.clone(), Durability::PageCache).unwrap();
    for i in 0..3 {
        append(&mut app, &payload(i)).unwrap();
    }
    drop(app);
    let (path, pos2) = position_of(&j, 2);
    let tail = pos2 + committed_extent(payload(2).len());
    let seg = j.segment(0).unwrap().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let stop = tail + 100 * RECORD_ALIGN;
    assert_eq!(seg.next_nonzero_header(tail, stop), None);
    for k in 0..100 {
        let at = tail + k * RECORD_ALIGN;
        file.write_all_at(&1u64.to_le_bytes(), at as u64).unwrap();
        assert_eq!(seg.next_nonzero_header(tail, stop), Some(at), "k = {k}");
        // A non-zero word between two header positions is no header word.
        file.write_all_at(&0u64.to_le_bytes(), at as u64).unwrap();
        file.write_all_at(&1u64.to_le_bytes(), at as u64 + 8)
            .unwrap();
        assert_eq!(seg.next_nonzero_header(tail, stop), None, "k = {k} + 8");
        file.write_all_at(&0u64.to_le_bytes(), at as u64 + 8)
            .unwrap();
    }
    // A word at `stop` is past the range; one at the segment's last position is found.
    file.write_all_at(&1u64.to_le_bytes(), stop as u64).unwrap();
    assert_eq!(seg.next_nonzero_header(tail, stop), None);
    let last = seg.size - RECORD_HEADER;
    file.write_all_at(&1u64.to_le_bytes(), last as u64).unwrap();
    assert_eq!(
        seg.next_nonzero_header(stop + RECORD_ALIGN, usize::MAX),
        Some(last)
    );
}
