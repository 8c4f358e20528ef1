//! The producers' table that travels with the frames (`Frame.producers`): the queue's
//! `producers.json`, read when it changed, sent once per version on each replica's stream
//! (docs/REPLICATION.md, "The producers' table").
//!
//! The append thread of `repliqd` replaces the file *before* it appends a batch, so a version
//! read after a frame's records were committed lists every remote batch those records belong
//! to. The replica stores it only once it holds what the table claims
//! (`producer_table::ShippedTables`).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::replication::producer_table::{MAX_SHIPPED_BYTES, PRODUCERS_FILE};

/// What identifies one version of the file without reading it (it is replaced by a rename, so
/// a new version is a new inode with its own times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The newest version of the queue's table, re-read when its file changed.
#[derive(Debug)]
pub(super) struct TableSource {
    path: PathBuf,
    seen: Option<(Stamp, u64, Bytes)>,
    versions: u64,
}

impl TableSource {
    pub(super) fn new(dir: &std::path::Path) -> TableSource {
        TableSource {
            path: dir.join(PRODUCERS_FILE),
            seen: None,
            versions: 0,
        }
    }

    /// The table now: (version, bytes). The version is a counter of this source (a replica's
    /// stream sends each version once). `None` without a table (no remote producer wrote) or
    /// if it cannot be read (logged; the previous version stays the newest).
    pub(super) fn current(&mut self) -> Option<(u64, Bytes)> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the producers' table to ship it");
                return self.seen.as_ref().map(|(_, v, b)| (*v, b.clone()));
            }
        };
        let stamp = Stamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        if let Some((s, v, b)) = &self.seen
            && *s == stamp
        {
            return Some((*v, b.clone()));
        }
        if usize::try_from(stamp.len).map_or(true, |l| l > MAX_SHIPPED_BYTES) {
            tracing::warn!(path = %self.path.display(), bytes = stamp.len, "the producers' table is too large to ship");
            return self.seen.as_ref().map(|(_, v, b)| (*v, b.clone()));
        }
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let changed = self.seen.as_ref().is_none_or(|(_, _, b)| **b != *bytes);
                if changed {
                    self.versions += 1;
                }
                let bytes = Bytes::from(bytes);
                self.seen = Some((stamp, self.versions, bytes.clone()));
                Some((self.versions, bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the producers' table to ship it");
                self.seen.as_ref().map(|(_, v, b)| (*v, b.clone()))
            }
        }
    }
}
