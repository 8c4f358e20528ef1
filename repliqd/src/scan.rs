//! Finding the queues under the persistence path, and the role of each, cheaply.
//!
//! The replication scheduler looks every 100 ms. A full look (list the directory, read and parse
//! every queue's `replication.json`) is replaced by a generation check: the directory is listed
//! again only when its modification time changed (a queue directory was created or removed), a
//! directory still lacking its `queue.meta` is looked at again, and a queue's state file is read
//! again only when its inode, size or modification time changed (`ReplicationState::store`
//! replaces it by a rename, so every store gives a new inode). Everything is looked at again
//! every [`FULL_SCAN_EVERY`] in case a file system keeps coarse times. All of it is blocking file
//! I/O: callers run [`QueueScanner::scan`] on the blocking pool.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use repliq::replication::{ReplicationState, Role};

/// How often everything is read again regardless of the generation check.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Inode, size and modification time of a file (`None`: it does not exist).
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Remembers what it saw under one root.
#[derive(Debug)]
pub struct QueueScanner {
    root: PathBuf,
    root_stamp: Stamp,
    /// Every sub-directory, with `true` once it holds a `queue.meta`.
    dirs: BTreeMap<PathBuf, bool>,
    /// Queue directory → (its state file's stamp, primary here).
    roles: BTreeMap<PathBuf, (Stamp, bool)>,
    last_full: Option<Instant>,
    /// Files read by the last call (for tests and the debug log).
    pub reads: usize,
}

impl QueueScanner {
    /// A scanner of `root`.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        QueueScanner {
            root,
            root_stamp: None,
            dirs: BTreeMap::new(),
            roles: BTreeMap::new(),
            last_full: None,
            reads: 0,
        }
    }

    /// The queue directories under the root, sorted, with `true` where this node is primary
    /// (blocking file I/O).
    pub fn scan(&mut self) -> Vec<(PathBuf, bool)> {
        self.reads = 0;
        let full = self
            .last_full
            .is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
        if full {
            self.last_full = Some(Instant::now());
        }
        let root_stamp = stamp(&self.root);
        if full || root_stamp != self.root_stamp || root_stamp.is_none() {
            self.root_stamp = root_stamp;
            let listed: BTreeMap<PathBuf, bool> = std::fs::read_dir(&self.root)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| (e.path(), false))
                        .collect()
                })
                .unwrap_or_default();
            self.dirs = listed;
            self.reads += 1;
        }
        for (dir, is_queue) in &mut self.dirs {
            if !*is_queue {
                *is_queue = dir.join("queue.meta").exists();
            }
        }
        self.roles.retain(|d, _| self.dirs.get(d) == Some(&true));
        let mut out = Vec::new();
        for (dir, _) in self.dirs.iter().filter(|(_, q)| **q) {
            let state_stamp = stamp(&dir.join(repliq::replication::STATE_FILE));
            let primary = match self.roles.get(dir) {
                Some((s, primary)) if !full && *s == state_stamp && state_stamp.is_some() => {
                    *primary
                }
                _ => {
                    self.reads += 1;
                    let primary =
                        matches!(ReplicationState::load(dir), Ok(s) if s.role == Role::Primary);
                    self.roles.insert(dir.clone(), (state_stamp, primary));
                    primary
                }
            };
            out.push((dir.clone(), primary));
        }
        out
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reads_a_state_file_again_only_when_it_changes() {
        let root = tempfile::tempdir().unwrap();
        let mut scanner = QueueScanner::new(root.path().to_owned());
        assert!(scanner.scan().is_empty());
        let dir = root.path().join("q");
        std::fs::create_dir(&dir).unwrap();
        // A directory without its meta file yet is not a queue, and is looked at again.
        assert!(scanner.scan().is_empty());
        let q = repliq::JournalQueue::<u64>::new(&dir, 16).unwrap();
        // The spare segment is prepared by a background thread that outlives the handle: let it
        // finish, or it may create its file while `remove_dir_all` below empties the directory.
        q.warm_up(std::time::Duration::from_secs(10));
        drop(q);
        let first = scanner.scan();
        assert_eq!(first, vec![(dir.clone(), true)]);
        let mut state = ReplicationState::load(&dir).unwrap();
        state.store(&dir).unwrap();
        assert_eq!(scanner.scan(), vec![(dir.clone(), true)]);
        assert_eq!(scanner.reads, 1, "the new state file is read once");
        assert_eq!(scanner.scan(), vec![(dir.clone(), true)]);
        assert_eq!(scanner.reads, 0, "nothing changed: nothing read");
        // A demotion (a new file by rename) is seen at the next scan.
        state.role = Role::Replica;
        state.store(&dir).unwrap();
        assert_eq!(scanner.scan(), vec![(dir.clone(), false)]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(scanner.scan().is_empty());
    }
}
