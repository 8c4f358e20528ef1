//! A queue directory written by format version 1 is checked in (`tests/fixtures/v1/queue`) and
//! must stay readable. Regenerate it (only when the format version changes, into a new folder)
//! with `REPLIQ_WRITE_FIXTURE=1 cargo test -p repliq --test journal_fixture_v1`.

use std::path::{Path, PathBuf};

use repliq::{QueueOptions, StartAt, Tailer};

#[repliq::message(name = "fixture.Reading")]
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    sensor: String,
    value: i64,
    tags: Vec<u32>,
}

fn reading(i: i64) -> Reading {
    Reading {
        sensor: format!("sensor-{}", i % 3),
        value: i * 1000 - 7,
        tags: (0..(i as u32 % 4)).collect(),
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/queue")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_v1_fixture_reads_back() {
    if std::env::var_os("REPLIQ_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(fixture());
        let mut q = QueueOptions::new()
            .capacity(1000)
            .segment_size(4096)
            .index_interval(4)
            .create::<Reading>(fixture())
            .unwrap();
        for i in 0..60 {
            q.enqueue(&reading(i)).unwrap();
        }
        for _ in 0..10 {
            q.dequeue().unwrap();
        }
        q.flush().unwrap();
    }
    // Work on a copy: opening registers cursors and appends.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());

    let info = repliq::inspect(tmp.path()).unwrap();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.type_name, "fixture.Reading");
    assert_eq!(info.first_seq, 0);
    assert_eq!(info.last_seq, Some(59));
    assert!(info.segments.len() > 1, "spans several segments");
    assert_eq!(info.cursors.len(), 1);
    assert_eq!(info.cursors[0].next_seq, 10);
    assert_eq!(repliq::verify(tmp.path(), |_, _| {}).unwrap().records, 60);

    let mut t = Tailer::<Reading>::open(tmp.path(), StartAt::Earliest).unwrap();
    for i in 0..60 {
        assert_eq!(t.try_next().unwrap(), Some(reading(i)));
    }
    assert_eq!(t.try_next().unwrap(), None);

    let mut q = QueueOptions::new().open::<Reading>(tmp.path()).unwrap();
    assert_eq!(
        q.dequeue().unwrap(),
        Some(reading(10)),
        "the stored cursor is used"
    );
    assert_eq!(
        q.enqueue(&reading(60)).unwrap(),
        60,
        "and it accepts appends"
    );

    // Consumer slots of a version-1 meta file are never reused (every process on it may be a
    // build that does not know generations): a removed cursor stays a tombstone.
    let default_slot = repliq::consumer_slots(tmp.path())
        .unwrap()
        .into_iter()
        .find(|s| s.name.as_deref() == Some("default"))
        .unwrap()
        .slot;
    assert!(repliq::remove_consumer(tmp.path(), "default").unwrap());
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the reuse delay
    let _other = QueueOptions::new()
        .consumer("other")
        .open::<Reading>(tmp.path())
        .unwrap();
    let slots = repliq::consumer_slots(tmp.path()).unwrap();
    assert_eq!(slots[default_slot].state, "removed");
    assert_eq!(slots[default_slot].generation, 0);
    assert!(slots.iter().all(|s| s.generation == 0));
    let meta = std::fs::read(tmp.path().join("queue.meta")).unwrap();
    assert_eq!(
        meta[8..12],
        1u32.to_le_bytes(),
        "still a version-1 meta file"
    );
}
