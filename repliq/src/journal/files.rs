//! Files of a queue directory: temporary names, publishing a file atomically under its final
//! name, removing what killed processes left behind.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::perms;

use crate::{QueueError, Result};

/// Temporary files (`.tmp-*`, `.spare-*`) older than this are left over by killed processes.
pub(crate) const STALE_TEMP_FILE_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes temporary files in `dir` not modified for `age`: files being published live for
/// milliseconds, and a process whose spare was deleted falls back to creating a new file.
/// (Age, not the PID in the name, decides: processes in other containers have other PIDs.)
pub(crate) fn remove_stale_temp_files(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".tmp-") || name.starts_with(".spare-")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d >= age);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A fresh name for a temporary file in `dir` (`.{kind}-{pid}-{nanos}-{n}`).
pub(crate) fn temp_path(dir: &Path, kind: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    dir.join(format!(".{kind}-{}-{nanos}-{n}", std::process::id()))
}

/// Writes a complete file under a temporary name and publishes it at `path` with a hard link,
/// which fails if `path` exists: readers never see a half-written meta or segment header.
/// Returns `Ok(true)` if this call published the file, `Ok(false)` if it already existed.
pub(crate) fn publish_file(dir: &Path, path: &Path, header: &[u8], len: u64) -> Result<bool> {
    publish_file_with(dir, path, header, len, true, |_| Ok(()))
}

/// [`publish_file`], letting `fill` write into a mapping of the unpublished file first (the first
/// record of a new segment). With `sync`, the file is synced before it is published.
pub(crate) fn publish_file_with(
    dir: &Path,
    path: &Path,
    header: &[u8],
    len: u64,
    sync: bool,
    fill: impl FnOnce(&crate::raw::MappedFile) -> Result<()>,
) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let tmp = temp_path(dir, "tmp");
    let result = (|| {
        let file = perms::create_new(dir, OpenOptions::new().read(true).write(true), &tmp)
            .map_err(|e| QueueError::io(format!("creating {}", tmp.display()), e))?;
        file.set_len(len)
            .map_err(|e| QueueError::io(format!("sizing {}", tmp.display()), e))?;
        crate::raw::preallocate(&file, len)
            .map_err(|e| QueueError::io(format!("allocating {}", tmp.display()), e))?;
        file.write_all_at(header, 0)
            .map_err(|e| QueueError::io(format!("writing {}", tmp.display()), e))?;
        let size = usize::try_from(len)
            .map_err(|_| QueueError::InvalidConfig(format!("file size {len} too large")))?;
        let map = crate::raw::MappedFile::map(&file, size, false)
            .map_err(|e| QueueError::io(format!("mapping {}", tmp.display()), e))?;
        fill(&map)?;
        if sync {
            map.flush_range(0, size)
                .map_err(|e| QueueError::io(format!("msync {}", tmp.display()), e))?;
            file.sync_all()
                .map_err(|e| QueueError::io(format!("syncing {}", tmp.display()), e))?;
        }
        drop(map);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(QueueError::io(format!("publishing {}", path.display()), e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}
