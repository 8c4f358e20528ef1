//! The spare segment file: prepared in the background (allocated, faulted in) so that a roll
//! does not stall a producer, taken by the producer that rolls.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;

use super::files::{STALE_TEMP_FILE_AGE, remove_stale_temp_files, temp_path};
use super::{Journal, perms};
use crate::{QueueError, Result};

/// A pre-allocated, pre-faulted file for the next segment, prepared in the background so that
/// a segment roll does not stall a producer on allocation and page zeroing.
#[derive(Debug, Default)]
pub(super) enum SpareState {
    #[default]
    None,
    Preparing,
    Ready(Spare),
}

/// See [`SpareState`]. Deleted on drop unless it was published.
#[derive(Debug)]
pub(crate) struct Spare {
    pub tmp: PathBuf,
    pub map: Option<crate::raw::MappedFile>,
    /// The first this many bytes of the mapping are faulted in.
    pub prefaulted: usize,
    /// The open file (a recycled segment's holds the exclusive `flock` retention took).
    pub file: Option<File>,
}

impl Drop for Spare {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Journal {
    /// Takes the prepared spare segment file, if one is ready; if one is being prepared, waits
    /// for it up to `wait`. Waiting is cheaper than making another file: that would do the same
    /// work (allocate, zero, fault in) on the producer's thread while the preparing thread
    /// competes for the same CPU and disk.
    pub(crate) fn take_spare(&self, wait: std::time::Duration) -> Option<Spare> {
        let mut state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*state, SpareState::Preparing) && !wait.is_zero() {
            state = self
                .spare_done
                .wait_timeout_while(state, wait, |s| matches!(s, SpareState::Preparing))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match std::mem::take(&mut *state) {
            SpareState::Ready(spare) => Some(spare),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Waits up to `timeout` while a spare is being prepared. `false` if it still is.
    pub(crate) fn wait_for_spare(&self, timeout: std::time::Duration) -> bool {
        let state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = self
            .spare_done
            .wait_timeout_while(state, timeout, |s| matches!(s, SpareState::Preparing))
            .unwrap_or_else(|p| p.into_inner());
        !matches!(*state, SpareState::Preparing)
    }

    /// Returns an unused spare (its file untouched) for a later roll.
    pub(crate) fn put_back_spare(&self, spare: Spare) {
        let mut state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*state, SpareState::None) {
            *state = SpareState::Ready(spare);
        }
    }

    /// Starts preparing a spare segment file in a background thread, unless one is ready or
    /// being prepared: allocated, and its first window faulted in writable for a producer's
    /// stores.
    pub(crate) fn prepare_spare(self: &Arc<Self>) {
        self.prepare_spare_faulted(true);
    }

    /// [`Journal::prepare_spare`] for a writer that fills the file with `pwrite` (a replica's
    /// sink): allocated only. Faulting its pages in would allocate and zero page-cache pages
    /// that the `pwrite`s overwrite whole (a quarter of the sink's system time in a catch-up of
    /// a few segments, benches/PERF.md). A producer that takes this spare after all (a promoted
    /// replica) faults it in ahead of itself as it writes, as it does past any spare's window.
    pub(crate) fn prepare_unfaulted_spare(self: &Arc<Self>) {
        self.prepare_spare_faulted(false);
    }

    fn prepare_spare_faulted(self: &Arc<Self>, prefault: bool) {
        {
            let mut state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*state, SpareState::None) {
                return;
            }
            *state = SpareState::Preparing;
        }
        let journal = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("repliq-prealloc".into())
            .spawn(move || {
                crate::raw::background::float_current_thread();
                let mut spare = None;
                if journal
                    .delete_consumed
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    // Retention runs here too, off the producer's path, and turns the newest
                    // consumed segment into the spare when it can. Failures are retried at the
                    // next segment.
                    spare = journal.purge(true).ok().and_then(|(_, spare)| spare);
                }
                let spare = spare.or_else(|| journal.make_spare(prefault).ok());
                let mut state = journal.spare.lock().unwrap_or_else(|p| p.into_inner());
                *state = match spare {
                    Some(spare) => SpareState::Ready(spare),
                    None => SpareState::None,
                };
                drop(state);
                journal.spare_done.notify_all();
            });
        if spawned.is_err() {
            let mut state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            *state = SpareState::None;
            drop(state);
            self.spare_done.notify_all();
        }
    }

    pub(super) fn make_spare(&self, prefault: bool) -> Result<Spare> {
        remove_stale_temp_files(&self.dir, STALE_TEMP_FILE_AGE);
        let len = self.meta.config.segment_size;
        let tmp = temp_path(&self.dir, "spare");
        let mut spare = Spare {
            tmp,
            map: None,
            prefaulted: 0,
            file: None,
        };
        let file = perms::create_new(
            &self.dir,
            OpenOptions::new().read(true).write(true),
            &spare.tmp,
        )
        .map_err(|e| QueueError::io(format!("creating {}", spare.tmp.display()), e))?;
        file.set_len(len)
            .map_err(|e| QueueError::io(format!("sizing {}", spare.tmp.display()), e))?;
        crate::raw::preallocate(&file, len)
            .map_err(|e| QueueError::io(format!("allocating {}", spare.tmp.display()), e))?;
        let size = usize::try_from(len)
            .map_err(|_| QueueError::InvalidConfig(format!("file size {len} too large")))?;
        // The kernel allocates and zeroes the page-cache pages here, in this background thread,
        // and (MADV_POPULATE_WRITE) maps them writable, running the file system's first-write
        // work too: the producer's stores into the new segment then take no page fault at all.
        // (MAP_POPULATE would map them read-only on a file system that tracks dirty pages, and
        // leave a write fault per page to the producer.) Only the first window of this
        // process's producers (`pace::WritePace`, a few milliseconds of their writing): they
        // ask for the rest as they get there (`Segment::prefault_ahead`), so a slow producer
        // never pays for pages it will not reach soon, and no single background job takes a
        // core for long.
        let map = crate::raw::MappedFile::map(&file, size, false)
            .map_err(|e| QueueError::io(format!("mapping {}", spare.tmp.display()), e))?;
        let ahead = if prefault {
            size.min(self.write_pace.window())
        } else {
            0
        };
        if ahead > 0 && !map.prefault(0, ahead, crate::raw::Prefault::Write) {
            map.prefault(0, ahead, crate::raw::Prefault::Read);
        }
        spare.map = Some(map);
        spare.prefaulted = ahead;
        spare.file = Some(file);
        Ok(spare)
    }

    #[cfg(test)]
    pub(crate) fn spare_ready(&self) -> bool {
        let state = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        matches!(*state, SpareState::Ready(_))
    }
}
