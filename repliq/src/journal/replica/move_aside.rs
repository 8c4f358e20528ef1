//! Moving a replica's suffix out of the live journal after a failover.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{corrupt, position_after};
use crate::journal::Journal;
use crate::journal::format::*;
use crate::journal::segment::{self};
use crate::{QueueError, Result};

/// Moves every record from `seq` on out of the live journal of a replica, into
/// `<dir>/moved-aside/epoch-<epoch>-from-<seq>/` (whole segment files, the first one as it was).
/// Returns that directory. Processes that still map the old files keep reading the old bytes;
/// new readers see the journal end before `seq`.
#[allow(unsafe_code)]
pub(crate) fn move_aside_from(journal: &Arc<Journal>, seq: u64, epoch: u64) -> Result<PathBuf> {
    let dir = &journal.dir;
    let Some((seg, pos)) = position_after(journal, seq)? else {
        // Nothing is held at all: nothing to move.
        return Ok(dir.join("moved-aside"));
    };
    let aside = dir
        .join("moved-aside")
        .join(format!("epoch-{epoch}-from-{seq}"));
    crate::journal::perms::create_dir_all(&aside)
        .map_err(|e| QueueError::io(format!("creating {}", aside.display()), e))?;
    keep_readable(dir, &aside)?;
    let io = |what: &str, p: &Path, e| QueueError::io(format!("{what} {}", p.display()), e);
    for first in journal.list_segments()? {
        if first > seg.first_seq {
            let from = dir.join(segment::segment_name(first));
            let to = aside.join(segment::segment_name(first));
            std::fs::rename(&from, &to).map_err(|e| io("moving aside", &from, e))?;
        }
    }
    // The segment holding `seq`: keep a full copy aside, and replace the live file (never
    // truncated or rewritten in place while mapped) by a copy that ends before `seq`.
    let live = dir.join(segment::segment_name(seg.first_seq));
    let keep = aside.join(segment::segment_name(seg.first_seq));
    std::fs::copy(&live, &keep).map_err(|e| io("copying aside", &live, e))?;
    // SAFETY: [0, pos) is the segment header (written before publication), the index (on a
    // replica written only by its sink, which runs in this same task and not concurrently) and
    // final entries up to the end of record `seq - 1`, never written again.
    let mut head = unsafe { seg.map.committed(0, pos) }
        .ok_or_else(|| corrupt(&seg, pos, "position outside the segment".into()))?
        .to_vec();
    // Clear index entries of moved records.
    let interval = u64::from(seg.index_interval);
    for k in 0..u64::from(seg.index_entries) {
        if seg.first_seq + k * interval >= seq {
            let at = S_INDEX + 4 * k as usize;
            if let Some(e) = head.get_mut(at..at + 4) {
                e.fill(0);
            }
        }
    }
    let tmp = crate::journal::temp_path(dir, "tmp-move-aside");
    let _ = std::fs::remove_file(&tmp);
    crate::journal::publish_file(dir, &tmp, &head, seg.size as u64)?;
    std::fs::rename(&tmp, &live).map_err(|e| io("replacing", &live, e))?;
    journal.forget_segments();
    // Readers in every process map the files afresh before their next record: an open consumer
    // at or before `seq` would otherwise go on reading the moved records from its old mapping
    // (and move its cursor over them), and never see the new primary's.
    journal
        .meta
        .rewrites()
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    // Consumers of this node that read past `seq` read records that are gone: they read the
    // new primary's from there. Synced, so that a power loss does not bring the old positions back.
    if crate::journal::cursor::rewind_consumers(&journal.meta, seq) > 0 {
        journal.meta.flush()?;
    }
    Ok(aside)
}

/// Copies the queue's meta file and its `schema.json` (if any) into `aside`, a directory that
/// receives segment files set aside, so that the tools read it as a queue of its own
/// (`repliq cat DIR/moved-aside/epoch-E-from-S --from S`, `repliq inspect`). Done before the
/// first segment moves: an interrupted move leaves a readable directory. A file already there
/// (an earlier, interrupted attempt) is kept.
pub(crate) fn keep_readable(dir: &Path, aside: &Path) -> Result<()> {
    for name in [META_FILE, crate::journal::schema_file::SCHEMA_FILE] {
        let (from, to) = (dir.join(name), aside.join(name));
        if to.exists() || !from.exists() {
            continue;
        }
        let tmp = aside.join(format!(".tmp-{name}"));
        std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &to))
            .map_err(|e| QueueError::io(format!("copying {} aside", from.display()), e))?;
    }
    Ok(())
}
