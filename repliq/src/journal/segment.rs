//! One segment file: a fixed-size, pre-allocated file holding a header, a sparse index and
//! records, named by the sequence number of its first record.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::format::*;
use super::header::{self, State};
use super::meta::{MetaConfig, read_exact_at};
use super::pace::WritePace;
use crate::raw::{MappedFile, Prefault};
use crate::{QueueError, Result};

/// A mapped segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
    pub size: usize,
    pub data_start: usize,
    pub index_entries: u32,
    pub index_interval: u32,
    pub map: MappedFile,
    /// This process's pre-faulting of the mapping (the queue's `prefault` option): the pages
    /// before this offset were faulted in or are being faulted in by the background thread.
    /// See [`Segment::prefault_ahead`].
    prefault_until: AtomicUsize,
    /// The position at which a producer or reader of this process asks for more
    /// ([`Segment::prefault_ahead`]); `usize::MAX` when pre-faulting is off or the whole segment
    /// was asked for.
    prefault_check: AtomicUsize,
    /// The open segment file, holding a shared `flock` for as long as this process maps it:
    /// retention recycles a consumed segment file only if it can lock it exclusively, i.e.
    /// when no process maps it (see [`hold_mapped_lock`]). Also asked where the file holds
    /// data ([`Segment::next_data`]).
    mapped_lock: File,
}

/// Takes the shared `flock` that a process holds on a segment file while it maps it, and checks
/// that `path` still names `file`. `Ok(false)` if the file is gone for this process's purposes:
/// retention is recycling it right now (it holds the exclusive lock) or did so between our
/// `open` and the lock (the name is gone or names another file).
///
/// A file system without `flock` support (some network file systems) refuses the exclusive
/// lock as well, so retention there deletes instead of recycling; then the mapping goes on
/// without a lock.
pub(crate) fn hold_mapped_lock(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(_)) => return Ok(true),
    }
    names(path, file)
}

/// Whether `path` still names `file` (the same inode). `Ok(false)` if the name is gone.
pub(crate) fn names(path: &Path, file: &File) -> Result<bool> {
    let opened = file
        .metadata()
        .map_err(|e| QueueError::io(format!("reading metadata of {}", path.display()), e))?;
    Ok(match std::fs::metadata(path) {
        Ok(named) => (named.dev(), named.ino()) == (opened.dev(), opened.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(QueueError::io(
                format!("reading metadata of {}", path.display()),
                e,
            ));
        }
    })
}

/// How far ahead of a reader [`Segment::prefault_ahead`] keeps pages mapped. Smaller than a
/// writer's: a reader follows a writer whose pages are in the page cache already, so this only
/// saves minor faults (one per 16 pages, with the kernel's fault-around), and a large request
/// would occupy a core for milliseconds (32 MiB took 3.4 ms at the start of a one-way run, with
/// the reader's core waiting for it: the largest episode of that run's event log).
pub(crate) const READ_PREFAULT_AHEAD: usize = 4 << 20;

/// The least [`Segment::prefault_ahead`] hands to the background thread.
const MIN_PREFAULT_JOB: usize = 64 << 10;

/// Who reports a position to [`Segment::prefault_ahead`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ahead<'a> {
    /// A producer of this process: pages are faulted in writable, a window that follows the
    /// producers' pace ahead.
    Write(&'a WritePace),
    /// A reader: pages are mapped readable, [`READ_PREFAULT_AHEAD`] ahead.
    Read,
}

pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header bytes of a new segment (everything before the index, which starts zeroed).
pub(crate) fn encode_header(config: &MetaConfig, first_seq: u64) -> Vec<u8> {
    let (entries, data_start) = segment_geometry(config.segment_size, config.index_interval);
    let mut b = vec![0u8; S_INDEX];
    b[S_MAGIC..S_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
    b[S_VERSION..S_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[S_DATA_START..S_DATA_START + 4].copy_from_slice(&(data_start as u32).to_le_bytes());
    b[S_FIRST_SEQ..S_FIRST_SEQ + 8].copy_from_slice(&first_seq.to_le_bytes());
    b[S_SEGMENT_SIZE..S_SEGMENT_SIZE + 8].copy_from_slice(&config.segment_size.to_le_bytes());
    b[S_FINGERPRINT..S_FINGERPRINT + 8].copy_from_slice(&config.fingerprint.to_le_bytes());
    b[S_INDEX_INTERVAL..S_INDEX_INTERVAL + 4].copy_from_slice(&config.index_interval.to_le_bytes());
    b[S_INDEX_ENTRIES..S_INDEX_ENTRIES + 4].copy_from_slice(&entries.to_le_bytes());
    let crc = crc32c::crc32c(&b[..S_CRC]);
    b[S_CRC..S_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Creates segment `first_seq` in `dir` if it does not exist yet (atomically: temp file, then a
/// hard link that fails if another process won). Returns `Ok(true)` if this call created it.
pub(crate) fn create(dir: &Path, config: &MetaConfig, first_seq: u64) -> Result<bool> {
    let header = encode_header(config, first_seq);
    let path = dir.join(segment_name(first_seq));
    super::publish_file(dir, &path, &header, config.segment_size)
}

impl Segment {
    /// Opens and maps a segment, checking its header against the queue's configuration.
    /// `Ok(None)` if the file does not exist.
    pub(crate) fn open(
        dir: &Path,
        config: &MetaConfig,
        first_seq: u64,
        read_only: bool,
    ) -> Result<Option<Segment>> {
        let path = dir.join(segment_name(first_seq));
        let file = match OpenOptions::new().read(true).write(!read_only).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(QueueError::io(format!("opening {}", path.display()), e)),
        };
        if !hold_mapped_lock(&file, &path)? {
            return Ok(None);
        }
        let corrupt = |offset: usize, reason: String| QueueError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        let len = file
            .metadata()
            .map_err(|e| QueueError::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        if len != config.segment_size {
            return Err(corrupt(
                len.min(config.segment_size) as usize,
                format!(
                    "segment file is {len} bytes, the queue's segment size is {}",
                    config.segment_size
                ),
            ));
        }
        let mut head = [0u8; S_INDEX];
        read_exact_at(&file, &mut head, 0, &path)?;
        if head[S_MAGIC..S_MAGIC + 8] != SEGMENT_MAGIC {
            return Err(corrupt(
                S_MAGIC,
                "bad magic number (not a repliq segment)".into(),
            ));
        }
        let version = read_u32(&head, S_VERSION);
        if version != FORMAT_VERSION {
            return Err(corrupt(
                S_VERSION,
                format!("unsupported format version {version}"),
            ));
        }
        let stored = read_u32(&head, S_CRC);
        let actual = crc32c::crc32c(&head[..S_CRC]);
        if stored != actual {
            return Err(corrupt(
                S_CRC,
                format!(
                    "segment header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
                ),
            ));
        }
        let expected = encode_header(config, first_seq);
        for (off, what) in [
            (S_FIRST_SEQ, "first sequence number"),
            (S_SEGMENT_SIZE, "segment size"),
            (S_FINGERPRINT, "type fingerprint"),
            (S_INDEX_INTERVAL, "index interval"),
            (S_DATA_START, "data start / index size"),
        ] {
            let width = if off == S_INDEX_INTERVAL || off == S_DATA_START {
                4
            } else {
                8
            };
            if head[off..off + width] != expected[off..off + width] {
                return Err(corrupt(
                    off,
                    format!("{what} in the segment header does not match the queue"),
                ));
            }
        }
        let (index_entries, data_start) =
            segment_geometry(config.segment_size, config.index_interval);
        let size = usize::try_from(config.segment_size)
            .map_err(|_| corrupt(S_SEGMENT_SIZE, "segment too large for this platform".into()))?;
        // Never MAP_POPULATE here: this runs on the hot path of whoever first needs the
        // segment. `Journal::segment` pre-faults it in the background instead.
        let map = if read_only {
            MappedFile::map_read_only(&file, size)
        } else {
            MappedFile::map(&file, size, false)
        }
        .map_err(|e| QueueError::io(format!("mapping {}", path.display()), e))?;
        Ok(Some(Segment {
            path,
            first_seq,
            size,
            data_start,
            index_entries,
            index_interval: config.index_interval,
            map,
            prefault_until: AtomicUsize::new(0),
            prefault_check: AtomicUsize::new(usize::MAX),
            mapped_lock: file,
        }))
    }

    /// A segment this process just created and published at `path`, from its existing mapping
    /// (a spare whose first `prefaulted` bytes are faulted in).
    pub(crate) fn from_created(
        path: PathBuf,
        config: &MetaConfig,
        first_seq: u64,
        map: MappedFile,
        prefaulted: usize,
        file: File,
    ) -> Segment {
        // `file` holds the shared lock already (taken before the file was published).
        let (index_entries, data_start) =
            segment_geometry(config.segment_size, config.index_interval);
        Segment {
            path,
            first_seq,
            size: config.segment_size as usize,
            data_start,
            index_entries,
            index_interval: config.index_interval,
            map,
            prefault_until: AtomicUsize::new(prefaulted),
            // The first request comes halfway through what the spare had faulted in.
            prefault_check: AtomicUsize::new(if prefaulted == usize::MAX {
                usize::MAX
            } else {
                prefaulted / 2
            }),
            mapped_lock: file,
        }
    }

    /// Turns pre-faulting ahead of this process's positions on ([`Segment::prefault_ahead`]).
    pub(crate) fn enable_prefault(&self) {
        let _ = self.prefault_check.compare_exchange(
            usize::MAX,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Called by a producer or reader of this process at `pos` after each record: keeps the
    /// pages ahead of `pos` faulted in, asking the background thread for the next window when
    /// `pos` has come halfway through the previous one. A producer's window follows its pace
    /// ([`WritePace`]), a reader's is [`READ_PREFAULT_AHEAD`]. One load and compare when nothing
    /// is due, and when pre-faulting is off.
    #[inline]
    pub(crate) fn prefault_ahead(self: &Arc<Self>, pos: usize, ahead: Ahead<'_>) {
        if pos < self.prefault_check.load(Ordering::Relaxed) {
            return;
        }
        self.prefault_more(pos, ahead);
    }

    #[cold]
    fn prefault_more(self: &Arc<Self>, pos: usize, ahead: Ahead<'_>) {
        let check = self.prefault_check.load(Ordering::Relaxed);
        if pos < check {
            return;
        }
        let (window, how) = match ahead {
            Ahead::Write(pace) => (pace.on_request(), Prefault::Write),
            Ahead::Read => (READ_PREFAULT_AHEAD, Prefault::Read),
        };
        let target = pos.saturating_add(window).min(self.size);
        let next_check = if target >= self.size {
            usize::MAX
        } else {
            target - window / 2
        };
        if self
            .prefault_check
            .compare_exchange(check, next_check, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread of this process asked first
        }
        // What lies behind `pos` was touched by the caller already, and what lies behind
        // `until` was asked for before.
        let until = self.prefault_until.fetch_max(target, Ordering::Relaxed);
        let from = until.max(pos);
        if target <= from.saturating_add(MIN_PREFAULT_JOB) {
            // Nothing new, or a sliver left after the window shrank: not worth a system call
            // (the caller faults those few pages itself).
            return;
        }
        let weak = Arc::downgrade(self);
        crate::raw::background::run(move || {
            if let Some(seg) = weak.upgrade() {
                seg.map.prefault(from, target - from, how);
            }
        });
    }

    /// `Err` if the file was truncated under this mapping (an access beyond its new end was
    /// backed by a zero page instead of killing the process, see `raw::sigbus`): what was read
    /// or written since may not be the file's.
    pub(crate) fn check_intact(&self) -> Result<()> {
        if self.map.damaged() {
            return Err(QueueError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                reason: "the file was truncated while mapped (an access beyond its end was \
                         refused); this queue cannot be read or written here until it is \
                         repaired"
                    .into(),
            });
        }
        Ok(())
    }

    /// The header word of the record at `pos`, if `pos` is a valid record position.
    #[inline]
    pub(crate) fn header_word(&self, pos: usize) -> Option<&AtomicU64> {
        if pos < self.data_start
            || !pos.is_multiple_of(RECORD_ALIGN)
            || pos + RECORD_HEADER > self.size
        {
            return None;
        }
        self.map.atomic_u64(pos + R_STATE)
    }

    /// The first record position in `from..stop` (on the record grid from `from`) whose header
    /// word is not zero (EMPTY), i.e. where a record may start; `None` if all are zero. A scan
    /// for later records skips the zeros of an unused segment's rest with one load per position.
    /// A position that is no valid record position is returned as is, for the caller to judge.
    pub(crate) fn next_nonzero_header(&self, from: usize, stop: usize) -> Option<usize> {
        let end = stop.min((self.size + 1).saturating_sub(RECORD_HEADER));
        if from >= end {
            return None;
        }
        if from < self.data_start || !from.is_multiple_of(RECORD_ALIGN) {
            return Some(from);
        }
        let positions = (end - from).div_ceil(RECORD_ALIGN);
        let step = RECORD_ALIGN / 8;
        let Some(words) = self
            .map
            .atomic_u64s(from + R_STATE, (positions - 1) * step + 1)
        else {
            return Some(from);
        };
        // Eight positions at a time: eight loads, one branch (the rest of a segment is
        // megabytes of zeros).
        const BLOCK: usize = 8;
        let mut skipped = 0;
        for block in words.chunks_exact(BLOCK * step) {
            let any = (0..BLOCK).fold(0, |a, k| a | block[k * step].load(Ordering::Acquire));
            if any != 0 {
                break;
            }
            skipped += BLOCK;
        }
        words[skipped * step..]
            .iter()
            .step_by(step)
            .position(|w| w.load(Ordering::Acquire) != 0)
            .map(|i| from + (skipped + i) * RECORD_ALIGN)
    }

    fn index_slot(&self, k: u64) -> Option<&AtomicU32> {
        if k >= u64::from(self.index_entries) {
            return None;
        }
        self.map.atomic_u32(S_INDEX + 4 * k as usize)
    }

    /// Records `pos` as the position of sequence `seq` if `seq` is an index point.
    #[inline]
    pub(crate) fn index_record(&self, seq: u64, pos: usize) {
        let rel = seq.wrapping_sub(self.first_seq);
        if !rel.is_multiple_of(u64::from(self.index_interval)) {
            return;
        }
        if let Some(slot) = self.index_slot(rel / u64::from(self.index_interval)) {
            slot.store(pos as u32, Ordering::Release);
        }
    }

    /// `true` if a committed record with sequence number `seq` starts at `pos`: the header word
    /// is COMMITTED (acquire), the record fits the segment and its sequence number and length
    /// fields agree. Committed headers never change, so the answer stays true.
    #[allow(unsafe_code)]
    fn is_record(&self, pos: usize, seq: u64) -> bool {
        let Some(word) = self.header_word(pos) else {
            return false;
        };
        let State::Committed { len } = header::decode(word.load(Ordering::Acquire)) else {
            return false;
        };
        // SAFETY: the header word at `pos` was acquire-loaded as COMMITTED just above; a
        // committed header is never written again.
        pos + committed_extent(len as usize) <= self.size
            && unsafe { self.header_fields(pos) }.is_some_and(|(s, _, l, _)| s == seq && l == len)
    }

    /// The best known starting point for reaching `seq`: the nearest index point at or before it,
    /// as (position, sequence). Falls back to the data start. Index entries are hints, written by
    /// anyone and possibly damaged: an entry is used only if a committed record with its sequence
    /// number starts where it points ([`Segment::is_record`]), so a walk never starts inside a
    /// payload (where it could take payload bytes for a header and write over them).
    pub(crate) fn index_lookup(&self, seq: u64) -> (usize, u64) {
        let interval = u64::from(self.index_interval);
        let rel = seq.saturating_sub(self.first_seq);
        let mut k = (rel / interval).min(u64::from(self.index_entries).saturating_sub(1));
        loop {
            if k == 0 {
                return (self.data_start, self.first_seq);
            }
            if let Some(slot) = self.index_slot(k) {
                let pos = slot.load(Ordering::Acquire) as usize;
                let seq = self.first_seq + k * interval;
                if self.is_record(pos, seq) {
                    return (pos, seq);
                }
            }
            k -= 1;
        }
    }

    /// The first range at or after `from` where the segment file may hold non-zero bytes
    /// (`raw::holes::next_data`): a search for records may skip what lies outside, which the
    /// file system reports as a hole (read as zeros, i.e. EMPTY header words). `None`: nothing
    /// but zeros from `from` to the end.
    pub(crate) fn next_data(&self, from: usize) -> Option<(usize, usize)> {
        crate::raw::holes::next_data(&self.mapped_lock, from as u64, self.size as u64)
            .map(|(start, stop)| (start as usize, stop as usize))
    }

    /// The last index point that has been written: where a search for the tail starts.
    pub(crate) fn last_index_point(&self) -> (usize, u64) {
        self.index_lookup(
            self.first_seq + u64::from(self.index_entries) * u64::from(self.index_interval),
        )
    }

    /// The payload of the committed record at `pos` (16-byte aligned), `len` bytes.
    ///
    /// # Safety
    ///
    /// The caller acquire-loaded the header word at `pos` as COMMITTED with length `len` (or
    /// ABANDONED/END covering the range: bytes no one writes any more).
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) unsafe fn payload(&self, pos: usize, len: usize) -> Option<&[u8]> {
        // SAFETY: committed payload bytes are never written again (the caller's guarantee).
        unsafe { self.map.committed(pos + RECORD_HEADER, len) }
    }

    /// Committed bytes of the record header at `pos` (sequence, crc, length, time).
    ///
    /// # Safety
    ///
    /// The caller acquire-loaded the header word at `pos` as COMMITTED.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) unsafe fn header_fields(&self, pos: usize) -> Option<(u64, u32, u32, u64)> {
        // SAFETY: the fields of a committed header were written before its release-CAS and are
        // never written again (the caller's guarantee).
        let b = unsafe { self.map.committed(pos, RECORD_HEADER) }?;
        Some((
            read_u64(b, R_SEQ),
            read_u32(b, R_CRC),
            read_u32(b, R_LEN),
            read_u64(b, R_TIME),
        ))
    }
}
