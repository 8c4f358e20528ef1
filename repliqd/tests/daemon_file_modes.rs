//! The daemon's own files (issue 20): the persistence root it creates is 0700 and its lock file
//! `.repliqd.lock` 0600, under umask 000 as under 077; a set-group-ID parent shares its group
//! bits, as queue directories do; a lock file left with a wider mode is tightened at start; a
//! root that others may enter is reported in the log.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};

use std::io::{BufRead, BufReader};

use support::{Daemon, free_port, repliqd};

/// Starts repliqd for `d` under `umask`, with its persistence path replaced by `root`; returns
/// it once it listens.
fn start(d: &Daemon, root: &Path, umask: libc::mode_t) -> Child {
    let text = std::fs::read_to_string(&d.config).unwrap().replace(
        &format!("path: {}\n", d.root.display()),
        &format!("path: {}\n", root.display()),
    );
    assert!(text.contains(&root.display().to_string()));
    std::fs::write(&d.config, text).unwrap();
    let log = std::fs::File::create(d.log_path()).unwrap();
    let mut cmd = repliqd(&d.config, &d.name, "info");
    cmd.stdout(Stdio::piped()).stderr(log);
    // SAFETY: umask(2) is async-signal-safe and touches nothing but the child's own mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("repliqd listening"), "{line:?}");
    child
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn root_and_lock_file_modes_do_not_follow_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (umask, name) in [(0o000, "u000"), (0o077, "u077"), (0o022, "u022")] {
        let d = Daemon::new(
            dir.path(),
            name,
            "asynchronous",
            &[("b", free_port())],
            free_port(),
        );
        // Missing parents too: each is created like a queue directory.
        let root = dir.path().join(format!("{name}-parent/root"));
        let child = start(&d, &root, umask);
        assert_eq!(mode(&root), 0o700, "{name}: the root");
        assert_eq!(
            mode(root.parent().unwrap()),
            0o700,
            "{name}: its new parent"
        );
        assert_eq!(
            mode(&root.join(".repliqd.lock")),
            0o600,
            "{name}: the lock file"
        );
        stop(child);
    }
}

#[test]
fn a_set_group_id_parent_shares_its_group_bits_and_an_old_lock_file_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let d = Daemon::new(
        dir.path(),
        "g",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    let root = shared.join("root");
    let child = start(&d, &root, 0o022);
    assert_eq!(mode(&root), 0o2770, "the root in a 2770 parent");
    assert_eq!(
        mode(&root.join(".repliqd.lock")),
        0o660,
        "the lock file in it"
    );
    stop(child);

    // A root made by someone else, open to all, with a lock file an older version left 0644.
    let d = Daemon::new(
        dir.path(),
        "old",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    let root = dir.path().join("old-root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock = root.join(".repliqd.lock");
    std::fs::write(&lock, "repliqd node old (pid 1)\n").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = start(&d, &root, 0o000);
    assert_eq!(mode(&lock), 0o600, "the old lock file is tightened");
    assert_eq!(mode(&root), 0o755, "an existing root keeps its mode");
    stop(child);
    let log = std::fs::read_to_string(d.log_path()).unwrap();
    assert!(
        log.contains("the persistence path is open to other users") && log.contains("0755"),
        "{log}"
    );
}
