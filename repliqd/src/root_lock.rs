//! One daemon per persistence path: `repliqd` holds an exclusive lock on `<root>/.repliqd.lock`
//! for its whole life.
//!
//! Two daemons on one path would both stream the same queues to the same replicas (and both
//! host replicas of other nodes' queues in the same files): replicas then saw interleaved
//! streams and false corruption. The lock is an `flock(2)` on an open file, so the kernel
//! releases it when the process dies in any way (`SIGKILL` included): nothing stale to clean up.
//! The holder writes its node name and process id into the file, so the refusal names it.
//! The file's mode is that of a queue file (0600, or a set-group-ID root's group bits), set at
//! every start whatever the umask, so a file left by an older version is tightened too.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use repliq::QueueError;

/// The lock file's name in the persistence root.
pub const LOCK_FILE: &str = ".repliqd.lock";

/// The held lock: released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RootLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl RootLock {
    /// Takes the lock of `root` for `node`.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] naming the holder if another process holds it;
    /// [`QueueError::Io`] if the file cannot be opened or written.
    pub fn acquire(root: &Path, node: &str) -> Result<RootLock, QueueError> {
        let path = root.join(LOCK_FILE);
        let io = |what: &str, e| QueueError::io(format!("{what} {}", path.display()), e);
        let mode = repliq::modes::file_mode(root);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("setting the mode of", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                };
                return Err(QueueError::InvalidConfig(format!(
                    "queue.persistence.path {} is already served by {holder} (lock {}); \
                     one repliqd per persistence path",
                    root.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", e)),
        }
        file.set_len(0).map_err(|e| io("writing", e))?;
        file.rewind().map_err(|e| io("writing", e))?;
        writeln!(file, "repliqd node {node} (pid {})", std::process::id())
            .map_err(|e| io("writing", e))?;
        Ok(RootLock { _file: file, path })
    }

    /// The lock file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path(), "node-a").unwrap();
        let err = RootLock::acquire(dir.path(), "node-b")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already served by repliqd node node-a (pid"),
            "{err}"
        );
        assert!(err.contains(".repliqd.lock"), "{err}");
        drop(first);
        let second = RootLock::acquire(dir.path(), "node-b").unwrap();
        let text = std::fs::read_to_string(second.path()).unwrap();
        assert!(text.starts_with("repliqd node node-b (pid"), "{text}");
    }
}
