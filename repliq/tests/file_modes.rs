//! Queue files and directories get explicit modes, never the process umask's (issue 20,
//! docs/SECURITY.md "Files and processes"): 0600 files and 0700 directories, plus the group
//! read/write bits of a set-group-ID directory they are created in (2750 → 0640 / 0750).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use repliq::replication::{NodePolicy, ReplicationState, Role};
use repliq::{QueueOptions, StartAt, Tailer};

#[repliq::message(name = "modes.Note")]
#[derive(Debug, Clone, PartialEq)]
struct Note {
    n: u64,
    text: String,
}

/// The usual umask, under which `File::create` would make world-readable files. Every test in
/// this binary sets the same value, so running them in parallel does not matter.
fn usual_umask() {
    // SAFETY: umask only replaces the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o022) };
}

/// Every file and directory below `dir` (not `dir` itself), with its permission bits.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((path.clone(), meta.is_dir(), meta.mode() & 0o777));
        if meta.is_dir() {
            walk(&path, out);
        }
    }
}

/// Creates a queue under `root` and makes it write every kind of file: several segments (and
/// the spare), the meta file, schema.json, a node policy, replication.json and the replication
/// lock (taken by a promotion). Returns the queue directory.
fn populate(root: &Path) -> PathBuf {
    NodePolicy {
        node: "n1".into(),
        role: Role::Primary,
        epoch: 1,
        required_acks: 0,
        ack_timeout: Duration::from_secs(1),
    }
    .write(root)
    .unwrap();
    let dir = root.join("nested").join("q");
    let mut q = QueueOptions::new()
        .segment_size(4096)
        .capacity(10_000)
        .create::<Note>(&dir)
        .unwrap();
    for n in 0..200 {
        q.enqueue(&Note {
            n,
            text: format!("note {n}"),
        })
        .unwrap();
    }
    q.dequeue().unwrap();
    q.flush().unwrap();
    drop(q);
    let replica = ReplicationState {
        role: Role::Replica,
        ..ReplicationState::default()
    };
    replica.store(&dir).unwrap();
    ReplicationState::promote(&dir).unwrap();
    dir
}

fn check_modes(root: &Path, file_mode: u32, dir_mode: u32) -> Vec<(PathBuf, bool, u32)> {
    let mut all = Vec::new();
    walk(root, &mut all);
    let names: Vec<String> = all
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "repliq-node.policy",
        "queue.meta",
        "schema.json",
        "replication.json",
        ".replication.lock",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} was not created: {names:?}"
        );
    }
    let segments = names.iter().filter(|n| n.ends_with(".seg")).count();
    assert!(segments >= 2, "several segments: {names:?}");
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { dir_mode } else { file_mode };
        assert_eq!(
            *mode,
            want,
            "{} has mode {mode:o}, not {want:o}",
            path.display()
        );
    }
    all
}

#[test]
fn files_are_private_under_the_usual_umask() {
    usual_umask();
    let tmp = tempfile::tempdir().unwrap();
    let dir = populate(tmp.path());
    check_modes(tmp.path(), 0o600, 0o700);

    // The owner (this process's user) still reads everything, read-only tools included.
    let mut t = Tailer::<Note>::open(&dir, StartAt::Earliest).unwrap();
    for n in 0..200 {
        let note = t.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(note.n, n);
    }
    assert_eq!(repliq::verify(&dir, |_, _| {}).unwrap().records, 200);
    assert_eq!(repliq::inspect(&dir).unwrap().last_seq, Some(199));
}

#[test]
fn another_user_cannot_read_a_queue_file() {
    usual_umask();
    // SAFETY: geteuid only reads the process's effective user id.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED another_user_cannot_read_a_queue_file: needs root and setpriv");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = populate(tmp.path());
    // Open the directories so that only the files' own modes stand in the way.
    for d in [tmp.path(), &tmp.path().join("nested"), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let read_as_nobody = |file: &Path| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    for name in ["queue.meta", "schema.json", "replication.json"] {
        assert!(!read_as_nobody(&dir.join(name)), "nobody read {name}");
    }
    // The same command reads a file that allows it (the check itself works).
    let open = dir.join("world-readable");
    std::fs::write(&open, b"x").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(read_as_nobody(&open), "setpriv could not read a 0644 file");
}

fn shared_group_directory(root_mode: u32, file_mode: u32, dir_mode: u32) {
    usual_umask();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(root_mode)).unwrap();
    populate(tmp.path());
    let all = check_modes(tmp.path(), file_mode, dir_mode);
    // The kernel carries the set-group-ID bit down to new directories.
    for (path, _, _) in all.iter().filter(|(_, d, _)| *d) {
        let mode = std::fs::metadata(path).unwrap().mode();
        assert!(mode & 0o2000 != 0, "{} lost set-group-ID", path.display());
    }
}

#[test]
fn a_shared_group_directory_gives_the_group_read_access() {
    shared_group_directory(0o2750, 0o640, 0o750);
}

#[test]
fn a_group_writable_shared_directory_gives_the_group_write_access() {
    // The Kubernetes data directory (docs/DEPLOY.md) is 2775: application pods share by group.
    shared_group_directory(0o2775, 0o660, 0o770);
}

#[test]
fn a_directory_without_set_group_id_shares_nothing() {
    usual_umask();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
    populate(tmp.path());
    check_modes(tmp.path(), 0o600, 0o700);
}
