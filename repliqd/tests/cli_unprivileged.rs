//! The read-only tools as a user who may only read a queue (issue 20): `inspect`, `verify`,
//! `cat`, `tail --no-follow` and `consumers` work, a tool that must write (`promote`,
//! `consumers --remove`) fails with an error that says why, and nothing in the queue changes.
//!
//! Runs as root (it switches to `nobody` with `setpriv`); CI runs as root. As another user it
//! cannot switch users and says so, but does not fail.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use repliq::QueueOptions;
use repliq::replication::{ReplicationState, Role};

#[repliq::message(name = "cli.Reading")]
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    sensor: String,
    value: i64,
}

const BIN: &str = env!("CARGO_BIN_EXE_repliq");
/// `nobody` / `nogroup` on Debian.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Every file under `dir` with its mode and bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, (meta.permissions().mode(), Vec::new()));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, (meta.permissions().mode(), bytes));
            }
        }
    }
    out
}

/// Gives group `NOBODY` read access (directories: read and search) to everything under `dir`.
fn share_with_nobody(dir: &Path) {
    let status = Command::new("chgrp")
        .args(["-R", &NOBODY.to_string()])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("chmod")
        .args(["-R", "g+rX"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn as_nobody(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_user_who_may_only_read_a_queue_reads_it_with_the_tools_and_changes_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: switching to user nobody needs root (CI runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("readings");
    {
        let mut q = QueueOptions::new()
            .capacity(1000)
            .segment_size(16 << 10)
            .create::<Reading>(&queue)
            .unwrap();
        for i in 0..300 {
            q.enqueue(&Reading {
                sensor: format!("s{}", i % 7),
                value: i,
            })
            .unwrap();
        }
        q.dequeue().unwrap();
    }
    // A replica, so that `promote` has something to write.
    let mut state = ReplicationState::load(&queue).unwrap();
    state.role = Role::Replica;
    state.store(&queue).unwrap();
    // The tool where `nobody` can run it: beside the queue, in a directory of group nobody.
    let bin = tmp.path().join("repliq");
    std::fs::copy(BIN, &bin).unwrap();
    share_with_nobody(tmp.path());
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let before = snapshot(tmp.path());
    let q = queue.to_str().unwrap();

    let (code, out, err) = as_nobody(&bin, &["inspect", q]);
    assert_eq!(code, 0, "inspect: {err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["type_name"], "cli.Reading");

    let (code, _, err) = as_nobody(&bin, &["verify", q]);
    assert_eq!(code, 0, "verify: {err}");

    let (code, out, err) = as_nobody(&bin, &["cat", q]);
    assert_eq!(code, 0, "cat: {err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300, "every stored message");
    assert_eq!(
        lines[299]["message"]["value"],
        299,
        "{}",
        out.lines().last().unwrap()
    );

    let (code, out, err) = as_nobody(&bin, &["tail", q, "--no-follow"]);
    assert_eq!(code, 0, "tail: {err}");
    assert_eq!(out.lines().count(), 300);

    let (code, out, err) = as_nobody(&bin, &["consumers", q]);
    assert_eq!(code, 0, "consumers: {err}");
    assert!(out.contains("default"), "{out}");

    // Tools that must write say why they cannot.
    for args in [
        vec!["promote", q],
        vec!["consumers", q, "--remove", "default"],
    ] {
        let (code, _, err) = as_nobody(&bin, &args);
        assert_ne!(code, 0, "{args:?} wrote as a user who may only read");
        assert!(
            err.to_lowercase().contains("permission denied"),
            "{args:?}: the error should say why: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    assert_eq!(
        snapshot(tmp.path()),
        before,
        "the queue changed under tools run by a user who may only read it"
    );
}
