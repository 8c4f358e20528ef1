//! The untyped byte journal: a directory with a mapped meta file and fixed-size, pre-allocated
//! segment files of records. See `docs/FORMAT.md` for the byte layout and [`header`] for the
//! commit protocol.
//!
//! * [`Appender`] appends records (any number of appenders in any number of processes).
//! * [`Reader`] walks committed records in sequence order from any position.
//! * [`cursor`] keeps named consumer positions in the meta file.
//! * [`notify`] lets readers sleep on a futex in the meta file until an appender commits.
//! * [`inspect`](crate::inspect) and [`verify`](crate::verify) are the tools' views.

mod appender;
pub(crate) mod cursor;
pub(crate) mod format;
pub(crate) mod header;
mod info;
#[cfg(all(test, repliq_loom))]
mod loom_protocol;
pub(crate) mod meta;
mod node_policy;
pub(crate) mod notify;
mod pace;
pub(crate) mod perms;
mod policy;
mod reader;
mod record;
pub(crate) mod schema_file;
// Byte-level access for replication; without the transport only part of it is used.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) mod replica;
pub(crate) mod segment;
#[cfg(all(test, not(repliq_loom)))]
mod test;
mod wait;
pub(crate) mod walk;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

pub use appender::Durability;
pub(crate) use appender::{Appender, Attempt};
pub use info::{
    ConsumerSlot, CursorInfo, JournalInfo, RawRecord, RawTailer, VerifyReport, consumer_slots,
    inspect, remove_consumer, verify,
};
pub(crate) use node_policy::InitialPolicy;
pub use node_policy::{NODE_POLICY_FILE, NodePolicy};
#[cfg(feature = "replication")]
pub(crate) use policy::DEFAULT_ACK_TIMEOUT;
pub use policy::Role;
pub(crate) use policy::{Policy, ack_timeout_error, acked_past, wait_acked};
pub(crate) use reader::Reader;
pub(crate) use record::RecordRef;
pub use schema_file::read_schema;
pub(crate) use wait::{ReadyFn, Word, poll_until};

use self::meta::{Meta, MetaConfig};
use self::segment::Segment;
use crate::{QueueError, Result};

/// An open queue directory, shared by the handles of one process.
#[derive(Debug)]
pub(crate) struct Journal {
    pub dir: PathBuf,
    pub meta: Meta,
    segments: Mutex<BTreeMap<u64, Weak<Segment>>>,
    populate: bool,
    /// Opened by a tool with [`Journal::open_read_only`]: nothing is ever written.
    pub read_only: bool,
    waiters: wait::AsyncWaiters,
    spare: Mutex<SpareState>,
    /// Signalled when a spare being prepared is ready (or failed).
    spare_done: std::sync::Condvar,
    delete_consumed: std::sync::atomic::AtomicBool,
    /// How far ahead of this process's producers pages are faulted in (and how much of a
    /// spare segment file).
    pub(crate) write_pace: pace::WritePace,
}

/// A pre-allocated, pre-faulted file for the next segment, prepared in the background so that
/// a segment roll does not stall a producer on allocation and page zeroing.
#[derive(Debug, Default)]
enum SpareState {
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
    /// Creates the queue directory and its meta file, or opens the queue if it already exists.
    /// A new meta file starts with the `initial` replication policy (by default the node policy
    /// of the directory's parent, see [`NodePolicy`]). `Ok((journal, created))`.
    pub(crate) fn create_or_open(
        dir: &Path,
        config: &MetaConfig,
        populate: bool,
        initial: InitialPolicy,
    ) -> Result<(Arc<Journal>, bool)> {
        let created = if meta::meta_path(dir).exists() {
            false
        } else {
            let policy = initial.resolve(dir)?;
            perms::create_dir_all(dir)
                .map_err(|e| QueueError::io(format!("creating directory {}", dir.display()), e))?;
            meta::create(dir, config, policy.as_ref())?
        };
        // Segment 0 is created by the first append, with its first record inside.
        let journal = Journal::open(dir, populate)?;
        Ok((journal, created))
    }

    /// Opens an existing queue directory.
    pub(crate) fn open(dir: &Path, populate: bool) -> Result<Arc<Journal>> {
        Self::open_mode(dir, populate, false)
    }

    /// Opens an existing queue directory for reading only: files are opened read-only and mapped
    /// with `PROT_READ`, so this works for a user who may only read them and on a read-only
    /// mount. Readers on it never abandon expired reservations (they wait for a writer to).
    pub(crate) fn open_read_only(dir: &Path) -> Result<Arc<Journal>> {
        Self::open_mode(dir, false, true)
    }

    fn open_mode(dir: &Path, populate: bool, read_only: bool) -> Result<Arc<Journal>> {
        let meta = Meta::open(dir, read_only)?;
        Ok(Arc::new(Journal {
            dir: dir.to_path_buf(),
            meta,
            segments: Mutex::new(BTreeMap::new()),
            populate,
            read_only,
            waiters: wait::AsyncWaiters::default(),
            spare: Mutex::new(SpareState::None),
            spare_done: std::sync::Condvar::new(),
            delete_consumed: std::sync::atomic::AtomicBool::new(false),
            write_pace: pace::WritePace::default(),
        }))
    }

    /// The replication policy as published in the meta file now (a few loads).
    #[inline]
    pub(crate) fn policy(&self) -> Policy {
        Policy::load(&self.meta)
    }

    pub(crate) fn config(&self) -> &MetaConfig {
        &self.meta.config
    }

    /// Drops the cached mappings, so that segment files replaced on disk are mapped anew.
    /// Handles that still hold an old mapping keep it.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn forget_segments(&self) {
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The first sequence numbers of all segment files, ascending.
    pub(crate) fn list_segments(&self) -> Result<Vec<u64>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| QueueError::io(format!("listing {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| QueueError::io(format!("listing {}", self.dir.display()), e))?;
            if let Some(seq) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_segment_name)
            {
                out.push(seq);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Opens (or reuses the mapping of) segment `first_seq`. `Ok(None)` if it does not exist.
    pub(crate) fn segment(&self, first_seq: u64) -> Result<Option<Arc<Segment>>> {
        let mut cache = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seg) = cache.get(&first_seq).and_then(Weak::upgrade) {
            return Ok(Some(seg));
        }
        let Some(seg) = Segment::open(&self.dir, &self.meta.config, first_seq, self.read_only)?
        else {
            return Ok(None);
        };
        let seg = Arc::new(seg);
        cache.retain(|_, w| w.strong_count() > 0);
        cache.insert(first_seq, Arc::downgrade(&seg));
        drop(cache);
        if self.populate {
            // Readers and producers of this process fault the pages in ahead of where they are,
            // in the background (`Segment::prefault_ahead`).
            seg.enable_prefault();
        }
        Ok(Some(seg))
    }

    /// Opens segment `first_seq`, creating it first if needed.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn segment_or_create(&self, first_seq: u64) -> Result<Arc<Segment>> {
        if let Some(seg) = self.segment(first_seq)? {
            return Ok(seg);
        }
        segment::create(&self.dir, &self.meta.config, first_seq)?;
        self.segment(first_seq)?.ok_or_else(|| QueueError::Corrupt {
            path: self.dir.join(segment::segment_name(first_seq)),
            offset: 0,
            reason: "segment vanished right after it was created".into(),
        })
    }

    /// Segment `first_seq` for a replica's sink: made from the spare prepared in the background
    /// when one is ready (its header written and synced, then published under its name), else
    /// as [`Journal::segment_or_create`] does. A new file costs an `fallocate` of the whole
    /// segment on the stream's path, which on tmpfs allocates and zeroes every page.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    #[allow(unsafe_code)]
    pub(crate) fn replica_segment(&self, first_seq: u64) -> Result<Arc<Segment>> {
        if let Some(seg) = self.segment(first_seq)? {
            return Ok(seg);
        }
        if let Some(mut spare) = self.take_spare(std::time::Duration::ZERO)
            && let Some(map) = spare.map.take()
            && let Some(file) = spare.file.take()
        {
            let config = &self.meta.config;
            let path = self.dir.join(segment::segment_name(first_seq));
            let header = segment::encode_header(config, first_seq);
            // SAFETY: the spare file is this process's alone until it is linked below.
            unsafe { map.write(0, &header) };
            let io = |what: &str, e| QueueError::io(format!("{what} {}", spare.tmp.display()), e);
            // Durable before it has a name, as `publish_file` makes a new segment.
            map.flush_range(0, header.len())
                .map_err(|e| io("msync", e))?;
            file.sync_all().map_err(|e| io("syncing", e))?;
            // The shared lock every mapping holds (see `Appender`'s roll).
            let _ = file.lock_shared();
            match std::fs::hard_link(&spare.tmp, &path) {
                Ok(()) => {
                    let prefaulted = if self.populate {
                        spare.prefaulted
                    } else {
                        usize::MAX
                    };
                    let seg = Segment::from_created(path, config, first_seq, map, prefaulted, file);
                    return Ok(self.adopt_segment(seg));
                }
                // Someone made it meanwhile (the spare is deleted on drop): open theirs below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(QueueError::io(format!("publishing {}", path.display()), e));
                }
            }
        }
        self.segment_or_create(first_seq)
    }

    /// The segment whose records include `seq` (the last one starting at or before it).
    pub(crate) fn segment_for(&self, seq: u64) -> Result<Option<Arc<Segment>>> {
        let list = self.list_segments()?;
        let Some(&first) = list.iter().rev().find(|&&s| s <= seq).or(list.first()) else {
            return Ok(None);
        };
        self.segment(first)
    }

    /// The lowest sequence number still stored (the first segment's first sequence).
    pub(crate) fn earliest_seq(&self) -> Result<u64> {
        Ok(self.list_segments()?.first().copied().unwrap_or(0))
    }

    /// Turns on automatic retention for this process's producers: segments every consumer
    /// cursor has passed are deleted in the background once per segment written.
    pub(crate) fn set_delete_consumed(&self, on: bool) {
        if on {
            self.delete_consumed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

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
    /// being prepared.
    pub(crate) fn prepare_spare(self: &Arc<Self>) {
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
                let spare = spare.or_else(|| journal.make_spare().ok());
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

    fn make_spare(&self) -> Result<Spare> {
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
        let ahead = size.min(self.write_pace.window());
        if !map.prefault(0, ahead, crate::raw::Prefault::Write) {
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

    /// The queue's segment lock (an exclusive `flock` on the meta file), held while retention
    /// deletes segments and while a producer publishes a new one. Released on drop.
    fn segment_lock(&self) -> Result<File> {
        let path = self.dir.join(format::META_FILE);
        let file = File::open(&path)
            .map_err(|e| QueueError::io(format!("opening {}", path.display()), e))?;
        file.lock()
            .map_err(|e| QueueError::io(format!("locking {}", path.display()), e))?;
        Ok(file)
    }

    /// Takes the segment lock for publishing segment `first_seq`, or `Ok(None)` if a later
    /// segment exists: then this producer's view is stale (another producer created segment
    /// `first_seq` meanwhile, and retention may even have deleted it, which it does only while
    /// a later segment exists). Publishing it again would give records sequence numbers that
    /// other records have, behind every cursor: acknowledged, then never delivered. Under the
    /// lock, retention cannot delete a segment between this check and the publication.
    pub(crate) fn lock_segment_creation(&self, first_seq: u64) -> Result<Option<File>> {
        let lock = self.segment_lock()?;
        if self.list_segments()?.last().is_some_and(|&s| s > first_seq) {
            return Ok(None);
        }
        Ok(Some(lock))
    }

    /// Publishes a segment this process created from a spare.
    pub(crate) fn adopt_segment(&self, seg: Segment) -> Arc<Segment> {
        let seg = Arc::new(seg);
        let mut cache = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, w| w.strong_count() > 0);
        cache.insert(seg.first_seq, Arc::downgrade(&seg));
        seg
    }

    pub(crate) fn lease_ms(&self) -> u32 {
        self.meta.config.lease_ms
    }

    /// The replication epoch word (used by replication; exposed for inspection).
    pub(crate) fn epoch_word(&self) -> &AtomicU64 {
        self.meta.epoch()
    }

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
    fn purge(&self, recycle: bool) -> Result<(usize, Option<Spare>)> {
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
    fn take_for_recycling(&self, first_seq: u64) -> Option<(File, Spare)> {
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
    fn zero_spare(&self, file: File, mut spare: Spare) -> Option<Spare> {
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
