//! File and directory modes of a queue (issue 20, docs/SECURITY.md "Files and processes").
//!
//! Queue files hold the messages, so they are never left to the process umask (0644 under the
//! usual 022 lets every local user read them). New directories are created 0700 and files 0600,
//! unless the directory they are made in is a *shared group directory*: set-group-ID
//! (`chgrp readers DIR && chmod 2750 DIR`). Then the new directory or file also gets that
//! directory's group read and write bits (2750 → directories 0750, files 0640; 2770 or 2775 →
//! 0770 and 0660), and the kernel carries the group and the set-group-ID bit down, so the
//! group can read (or also write) the queues and nobody else. Ordinary directories such as
//! `/tmp` or `/var/lib` never widen the modes, and others never get any access. The modes are
//! set explicitly after creation (`fchmod`), so the process umask neither widens nor narrows
//! them. Files and directories that already exist keep their modes.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read/write.
const FILE_PRIVATE: u32 = 0o600;
/// Owner read/write/search.
const DIR_PRIVATE: u32 = 0o700;

/// The group read and write bits (`0o060`) that `dir` shares, if it is set-group-ID; else 0.
fn shared_group_bits(dir: &Path) -> u32 {
    match std::fs::metadata(dir) {
        Ok(m) if m.mode() & 0o2000 != 0 => m.mode() & 0o060,
        _ => 0,
    }
}

/// The mode of a new file in the directory `dir`: 0600, plus the group read/write bits of `dir`
/// if it is set-group-ID.
pub fn file_mode(dir: &Path) -> u32 {
    FILE_PRIVATE | shared_group_bits(dir)
}

/// Creates the file `path` in `dir` (it must not exist: `create_new`) with `options` (read,
/// write) and the mode of [`file_mode`], whatever the umask.
pub(crate) fn create_new(
    dir: &Path,
    options: &mut OpenOptions,
    path: &Path,
) -> std::io::Result<File> {
    let mode = file_mode(dir);
    let file = options.create_new(true).mode(mode).open(path)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// Opens the file `path` in `dir` for writing, creating it with the mode of [`file_mode`] if it
/// does not exist (an existing file keeps its mode and contents).
pub(crate) fn open_or_create(dir: &Path, path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    match create_new(dir, &mut options, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            OpenOptions::new().write(true).open(path)
        }
        other => other,
    }
}

/// Creates `dir` and any missing parents with mode 0700, plus (if the nearest existing ancestor
/// is set-group-ID) its group read/write bits and the matching search bit, whatever the umask.
/// `Ok` if it exists.
///
/// # Errors
///
/// As `mkdir(2)` and `chmod(2)`.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(a) = at {
        if a.as_os_str().is_empty() || a.is_dir() {
            break;
        }
        missing.push(a);
        at = a.parent();
    }
    for d in missing.into_iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let group = shared_group_bits(parent);
        // Group read gives group search too (a directory that cannot be entered is useless).
        let search = if group & 0o040 != 0 { 0o010 } else { 0 };
        match std::fs::create_dir(d) {
            Ok(()) => {
                // Keep the set-group-ID bit the kernel carried down from the parent.
                let inherited = std::fs::metadata(d)?.mode() & 0o2000;
                let mode = DIR_PRIVATE | group | search | inherited;
                std::fs::set_permissions(d, Permissions::from_mode(mode))?;
            }
            // Another process made it first: its mode is its creator's business.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
