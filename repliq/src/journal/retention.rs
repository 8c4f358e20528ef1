//! Retention: deleting (or recycling into the next spare) the segments every durable cursor
//! has passed.

use std::fs::{File, OpenOptions};

use super::files::temp_path;
use super::spare::Spare;
use super::{Journal, cursor, segment};
use crate::{QueueError, Result};

impl Journal {
    /// Deletes whole segments that every durable consumer cursor has passed, keeping the
    /// segment the slowest cursor is in and everything after it. Returns the number deleted.
    ///
    /// Processes that still map a deleted segment keep reading it (the file is unlinked, never
    /// truncated); the space is freed when the last mapping goes away.
    pub(crate) fn purge_consumed(&self) -> Result<usize> {
        Ok(self.purge(false)?.0)
    }

    /// Retention ([`Journal::purge_consumed`]): returns how many segments it removed and, with
    /// `recycle`, the newest of them made into the next spare instead of deleted, if no process
    /// maps it. Its pages are resident and mapped already, so zeroing them costs a `memset`
    /// where a new file costs the kernel allocating, zeroing and mapping 16 Ki fresh pages per
    /// 64 MiB (see `benches/PERF.md`).
    ///
    /// Recycling happens on tmpfs only (see [`Journal::take_for_recycling`]). The recycled file
    /// is renamed to a temporary name under an exclusive `flock` on it (which every process that
    /// maps a segment would conflict with, see `segment::hold_mapped_lock`), then zeroed, and
    /// synced before it is returned (a no-op on tmpfs; on a disk, after a machine crash a segment
    /// made from it must read as zeros wherever it was not written, like a new file).
    pub(super) fn purge(&self, recycle: bool) -> Result<(usize, Option<Spare>)> {
        let deleting = self.segment_lock()?;
        let Some(min) = cursor::min_position(&self.meta) else {
            return Ok((0, None));
        };
        let list = self.list_segments()?;
        let consumed: Vec<u64> = list
            .windows(2)
            .take_while(|pair| pair[1] <= min)
            .map(|pair| pair[0])
            .collect();
        let mut removed = 0;
        let mut renamed = None;
        if recycle && let Some(&newest) = consumed.last() {
            renamed = self.take_for_recycling(newest);
            removed += usize::from(renamed.is_some());
        }
        for &first_seq in &consumed {
            let path = self.dir.join(segment::segment_name(first_seq));
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(QueueError::io(format!("deleting {}", path.display()), e)),
            }
        }
        drop(deleting);
        Ok((
            removed,
            renamed.and_then(|(file, spare)| self.zero_spare(file, spare)),
        ))
    }

    /// Renames consumed segment `first_seq` to a spare name if no process maps it. `None` if a
    /// process maps it, it is gone, or a step failed (then retention deletes it).
    pub(super) fn take_for_recycling(&self, first_seq: u64) -> Option<(File, Spare)> {
        let path = self.dir.join(segment::segment_name(first_seq));
        let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
        // Only on tmpfs. On a disk, the zeros must reach the disk before the file may become a
        // segment again (see `purge`): 64 MiB written and synced per segment, twice the disk
        // traffic of a new file, whose unwritten blocks read as zeros for free. Measured slower
        // than new files on this project's machines (benches/PERF.md).
        if !crate::raw::on_tmpfs(&file) {
            return None;
        }
        file.try_lock().ok()?;
        let len = file.metadata().ok()?.len();
        if !segment::names(&path, &file).ok()? || len != self.meta.config.segment_size {
            return None;
        }
        // A fresh modification time, or another process's clean-up of stale temporary files
        // would take the spare for a leftover of a killed process.
        file.set_modified(std::time::SystemTime::now()).ok()?;
        let tmp = temp_path(&self.dir, "spare");
        std::fs::rename(&path, &tmp).ok()?;
        // From here on, dropping the spare deletes the file: it was consumed either way.
        let spare = Spare {
            tmp,
            map: None,
            prefaulted: 0,
            file: None,
        };
        Some((file, spare))
    }

    /// Zeroes and syncs a file [`Journal::take_for_recycling`] renamed.
    #[allow(unsafe_code)]
    pub(super) fn zero_spare(&self, file: File, mut spare: Spare) -> Option<Spare> {
        let size = usize::try_from(self.meta.config.segment_size).ok()?;
        let map = crate::raw::MappedFile::map(&file, size, false).ok()?;
        // SAFETY: see `zero_all`: the exclusive lock showed that no process mapped the file, and
        // none can map it any more: its name is gone, and a process that opened it by that name
        // before the rename finds the name gone once it has its shared lock.
        unsafe { map.zero_all() }?;
        file.sync_data().ok()?;
        spare.map = Some(map);
        spare.prefaulted = size;
        spare.file = Some(file);
        Some(spare)
    }
}
