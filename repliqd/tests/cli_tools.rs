//! The `repliq` CLI against real queue directories: inspect, verify (clean and corrupt), tail.

use std::os::unix::fs::FileExt;
use std::process::Command;

use repliq::{QueueOptions, StartAt};

#[repliq::message(name = "cli.Note")]
#[derive(Debug, Clone, PartialEq)]
struct Note {
    text: String,
}

const BIN: &str = env!("CARGO_BIN_EXE_repliq");

fn repliq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn queue_with_notes(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut q = QueueOptions::new()
        .capacity(100)
        .segment_size(8192)
        .create::<Note>(tmp.path())
        .unwrap();
    for i in 0..n {
        q.enqueue(&Note {
            text: format!("note {i}"),
        })
        .unwrap();
    }
    q.dequeue().unwrap();
    tmp
}

#[test]
fn inspect_prints_json_describing_the_queue() {
    let tmp = queue_with_notes(5);
    let (code, out, err) = repliq(&["inspect", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type_name"], "cli.Note");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["capacity"], 100);
    assert_eq!(v["first_seq"], 0);
    assert_eq!(v["last_seq"], 4);
    assert_eq!(v["segments"], serde_json::json!([0]));
    assert_eq!(v["cursors"][0]["name"], "default");
    assert_eq!(v["cursors"][0]["next_seq"], 1);
    assert_eq!(v["cursors"][0]["backlog"], 4);
    assert!(v["fingerprint"].as_str().unwrap().starts_with("0x"));
}

#[test]
fn verify_passes_a_clean_queue_and_fails_a_corrupt_one_with_file_and_offset() {
    let tmp = queue_with_notes(5);
    let dir = tmp.path().to_str().unwrap();
    let (code, out, _) = repliq(&["verify", dir]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: 5 records in 1 segments"), "{out}");

    // Flip a payload byte of record 2.
    let t = repliq::Tailer::<Note>::open(tmp.path(), StartAt::Seq(2)).unwrap();
    assert_eq!(t.seq(), 2);
    drop(t);
    let seg = tmp.path().join("00000000000000000000.seg");
    let bytes = std::fs::read(&seg).unwrap();
    let needle = b"note 2";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(b"X", at as u64).unwrap();

    let (code, out, _) = repliq(&["verify", dir]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("corrupt queue file"), "{out}");
    assert!(out.contains("00000000000000000000.seg at offset"), "{out}");
    assert!(out.contains("checksum mismatch in record 2"), "{out}");
}

#[test]
fn verify_of_a_missing_directory_is_an_error_not_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let (code, _, err) = repliq(&["verify", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("queue.meta"), "{err}");
}

#[test]
fn tail_raw_prints_sequence_length_and_hex() {
    let tmp = queue_with_notes(3);
    let (code, out, err) = repliq(&[
        "tail",
        tmp.path().to_str().unwrap(),
        "--raw",
        "--no-follow",
        "--from",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let archived = repliq::to_bytes(&Note {
        text: "note 1".into(),
    })
    .unwrap();
    let hex: String = archived.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[0], format!("1 {} {hex}", archived.len()));
    assert!(lines[1].starts_with("2 "));
}
