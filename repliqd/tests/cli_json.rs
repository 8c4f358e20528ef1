//! `repliq cat`, `repliq tail` and `repliq inspect` on a queue whose message type the CLI
//! was not built with (every supported field type), checked against `serde_json::to_value` of the
//! typed values; the Python reader (`clients/python`) prints the same values.

use std::process::Command;

use repliq_tests::kitchen_sink::{expected_json, sort_sets, write_sample_queue};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_repliq");

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn cat_prints_every_message_as_serde_would() {
    let tmp = tempfile::tempdir().unwrap();
    let values = write_sample_queue(tmp.path(), 120);
    let dir = tmp.path().to_str().unwrap();
    let (code, out, err) = run(Command::new(BIN).args(["cat", dir]));
    assert_eq!(code, 0, "stderr: {err}");
    let printed = lines(&out);
    assert_eq!(printed.len(), values.len());
    for (i, (line, value)) in printed.iter().zip(&values).enumerate() {
        assert_eq!(line["seq"], i as u64);
        let mut message = line["message"].clone();
        sort_sets(&mut message);
        // Through text like the CLI's output (serde_json's parser may round the last digit of a
        // float differently from the value printed, so compare parsed with parsed).
        let expected: Value = serde_json::from_str(&expected_json(value).to_string()).unwrap();
        assert_eq!(message, expected, "message {i}");
    }

    // `tail --from` prints the same lines from that sequence on, JSON without being asked;
    // `--json` (insisting on JSON) changes nothing on a self-describing queue.
    for json in [&[][..], &["--json"][..]] {
        let (code, out, _) = run(Command::new(BIN)
            .args(["tail", dir, "--no-follow", "--from", "100"])
            .args(json));
        assert_eq!(code, 0);
        assert_eq!(lines(&out), printed[100..]);
    }

    // `inspect` shows the schema.
    let (code, out, _) = run(Command::new(BIN).args(["inspect", dir]));
    assert_eq!(code, 0);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["schema"]["name"], "sink.Everything");
    assert_eq!(info["schema"]["format"], "repliq.schema.v1");
}

#[test]
fn python_reader_prints_what_cat_prints() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_sample_queue(tmp.path(), 60);
    let dir = tmp.path().to_str().unwrap();
    let (code, cat, err) = run(Command::new(BIN).args(["cat", dir]));
    assert_eq!(code, 0, "stderr: {err}");
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python");
    let (code, py, err) = run(Command::new("python3")
        .args(["-m", "repliq_reader", "cat", dir])
        .env("PYTHONPATH", python)
        .env("PYTHONIOENCODING", "utf-8"));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(lines(&py), lines(&cat));
}

#[test]
fn queue_without_schema_prints_bytes_with_a_note_or_is_refused_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    write_sample_queue(tmp.path(), 1);
    std::fs::remove_file(tmp.path().join("schema.json")).unwrap();
    let dir = tmp.path().to_str().unwrap();
    // Without a schema the default falls back to `--raw` lines, and says so on stderr.
    let (code, out, err) = run(Command::new(BIN).args(["cat", dir]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no schema.json"), "{err}");
    let (_, raw, _) = run(Command::new(BIN).args(["cat", dir, "--raw"]));
    assert_eq!(out, raw);
    assert!(raw.starts_with("0 "), "{raw}");
    // `--json` insists, and is refused with a hint.
    let (code, _, err) = run(Command::new(BIN).args(["cat", dir, "--json"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("no schema.json") && err.contains("--raw"),
        "{err}"
    );
    // Old queues still open (and inspect shows `schema: null`).
    let (code, out, _) = run(Command::new(BIN).args(["inspect", tmp.path().to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(out.contains("\"schema\": null"), "{out}");
}

#[test]
fn a_record_with_a_bad_checksum_is_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let values = write_sample_queue(tmp.path(), 20);
    let dir = tmp.path().to_str().unwrap();
    // Flip the last payload byte of record 7, as a disk or an operator might.
    let mut tailer = repliq::RawTailer::open(tmp.path(), Some(7)).unwrap();
    let rec = tailer.try_next().unwrap().unwrap();
    assert_eq!(rec.seq, 7);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&rec.file)
            .unwrap();
        // The payload ends where the record's header says; find its last byte by content.
        let header = 32u64; // docs/FORMAT.md, "Record"
        let at = rec.offset + header + rec.payload.len() as u64 - 1;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        assert_eq!(b[0], rec.payload[rec.payload.len() - 1], "payload located");
        f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
    }
    let (code, out, err) = run(Command::new(BIN).args(["cat", dir]));
    assert_eq!(code, 1, "damage is not silent");
    assert!(
        err.contains(&rec.file.display().to_string()) && err.contains(&rec.offset.to_string()),
        "stderr names file and offset: {err}"
    );
    let seqs: Vec<u64> = lines(&out)
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..values.len() as u64).filter(|&s| s != 7).collect();
    assert_eq!(seqs, expected, "every other record is printed");
}
