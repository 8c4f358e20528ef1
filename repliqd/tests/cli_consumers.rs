//! `repliq consumers DIR`: lists a queue's consumer cursor slots and removes cursors, whose slots
//! are then reused.

use std::process::Command;
use std::time::Duration;

use repliq::QueueOptions;

#[repliq::message(name = "cli.Tick")]
#[derive(Debug, Clone, PartialEq)]
struct Tick(u64);

const BIN: &str = env!("CARGO_BIN_EXE_repliq");

fn repliq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn consumers_lists_and_removes_cursors_and_their_slots_are_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    // Lease 10 ms: a removed slot is reused 50 ms later.
    let mut q = QueueOptions::new()
        .lease_timeout(Duration::from_millis(10))
        .consumer("alpha")
        .create::<Tick>(tmp.path())
        .unwrap();
    q.enqueue(&Tick(1)).unwrap();
    let beta = q.consumer("beta").unwrap();
    drop(beta);

    let (code, out, err) = repliq(&["consumers", dir]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    let beta_slot = rows
        .iter()
        .find(|r| r["name"] == "beta")
        .expect("beta listed")["slot"]
        .as_u64()
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r["state"] == "active" && r["generation"] == 0 && r["next_seq"] == 0)
    );
    let (_, all, _) = repliq(&["consumers", dir, "--all"]);
    assert_eq!(all.lines().count(), 64, "every slot with --all");

    let (code, out, _) = repliq(&["consumers", dir, "--remove", "beta"]);
    assert_eq!((code, out.trim()), (0, "removed beta"));
    let (code, _, err) = repliq(&["consumers", dir, "--remove", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no consumer \"nobody\""), "{err}");
    let (code, _, err) = repliq(&["consumers", dir, "--remove", "replica:node-b"]);
    assert_eq!(code, 2);
    assert!(err.contains("replica cursor"), "{err}");

    let (_, out, _) = repliq(&["consumers", dir]);
    assert!(out.contains(r#""state":"removed""#), "{out}");
    // After the reuse delay, a new consumer whose home slot (FNV-1a of the name, mod 64, as
    // docs/FORMAT.md says) is beta's old slot takes it, one generation on.
    let home = |name: &str| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in name.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % 64
    };
    let name = (0..)
        .map(|i| format!("n{i}"))
        .find(|n| home(n) == beta_slot)
        .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    drop(q.consumer(&name).unwrap());
    let slots = repliq::consumer_slots(tmp.path()).unwrap();
    let slot = &slots[beta_slot as usize];
    assert_eq!(
        (slot.name.as_deref(), slot.generation),
        (Some(name.as_str()), 1),
        "beta's slot was reused with generation 1"
    );
    let (_, out, _) = repliq(&["consumers", dir]);
    assert!(out.contains(r#""generation":1"#), "{out}");
}
