//! The `repliq` CLI against real queue directories: inspect, verify (clean and corrupt), tail,
//! cat, and its help.

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
    assert_eq!(
        v["meta_version"], 2,
        "a queue created now has a version 2 meta file"
    );
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

#[test]
fn tail_and_cat_print_json_by_default() {
    let tmp = queue_with_notes(3);
    let dir = tmp.path().to_str().unwrap();
    for args in [&["tail", dir, "--no-follow"][..], &["cat", dir][..]] {
        let (code, out, err) = repliq(args);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{args:?}: {out}");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["seq"], i as u64);
            assert_eq!(
                line["message"],
                serde_json::json!({ "text": format!("note {i}") })
            );
            assert!(line["time"].is_u64(), "{line}");
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of what the CLI computes,
/// written the other way round so that the two check each other).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ` to nanoseconds since the Unix epoch.
fn parse_rfc3339(s: &str) -> u64 {
    assert_eq!(s.len(), 30, "{s}");
    assert!(
        s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == ".",
        "{s}"
    );
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    u64::try_from(secs).unwrap() * 1_000_000_000 + u64::try_from(n(20..29)).unwrap()
}

#[test]
fn rfc3339_times_on_request_in_json_and_raw_lines() {
    let tmp = queue_with_notes(3);
    let dir = tmp.path().to_str().unwrap();
    let (_, nanos, _) = repliq(&["cat", dir]);
    let (code, rfc, err) = repliq(&["cat", dir, "--rfc3339"]);
    assert_eq!(code, 0, "{err}");
    let nanos: Vec<serde_json::Value> = nanos
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rfc: Vec<serde_json::Value> = rfc
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(nanos.len(), 3);
    for (n, r) in nanos.iter().zip(&rfc) {
        assert_eq!(n["message"], r["message"]);
        assert_eq!(
            parse_rfc3339(r["time"].as_str().unwrap()),
            n["time"].as_u64().unwrap()
        );
    }
    // `--raw --rfc3339`: SEQ TIME LEN HEX.
    let (code, raw, err) = repliq(&["tail", dir, "--raw", "--rfc3339", "--no-follow"]);
    assert_eq!(code, 0, "{err}");
    let first: Vec<&str> = raw.lines().next().unwrap().split(' ').collect();
    assert_eq!(first.len(), 4, "{raw}");
    assert_eq!(first[0], "0");
    assert_eq!(parse_rfc3339(first[1]), nanos[0]["time"].as_u64().unwrap());
}

#[test]
fn help_describes_the_cli_not_the_daemon() {
    let (code, out, err) = repliq(&["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("repliq queue directories"), "{out}");
    assert!(!out.contains("node daemon (replication"), "{out}");
    for command in ["inspect", "verify", "cat", "tail", "promote"] {
        assert!(out.contains(command), "{command} missing from {out}");
    }
    let (_, tail, _) = repliq(&["tail", "--help"]);
    assert!(
        tail.contains("--raw") && tail.contains("--rfc3339"),
        "{tail}"
    );
}
