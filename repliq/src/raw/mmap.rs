//! Shared, writable file mappings for the journal.
//!
//! A [`MappedFile`] is a `MAP_SHARED` mapping of a whole journal file (meta file or segment).
//! Several processes map the same file at once, so Rust's aliasing rules cannot be checked by the
//! compiler here; soundness rests on the journal's record protocol (see `docs/FORMAT.md`):
//!
//! * every word that more than one party touches concurrently (record header words, index
//!   entries, cursor words, futex words) is accessed only through atomics ([`MappedFile::atomic_u64`],
//!   [`MappedFile::atomic_u32`]);
//! * payload bytes are written only by the one writer that owns the record's reservation (won by a
//!   compare-and-swap on the header word) and only inside the reserved extent
//!   ([`MappedFile::with_slot`]), and they become visible to readers only through an acquire-load
//!   of a committed header;
//! * committed bytes are never written again, so shared references to them
//!   ([`MappedFile::committed`]) stay valid for as long as the mapping lives;
//! * journal files are never truncated by repliq while they can be mapped (retention unlinks
//!   whole files). If someone else truncates one, the access beyond the new end does not kill
//!   the process: `super::sigbus` backs the page with zeros and marks the mapping
//!   [damaged](MappedFile::damaged), which the journal reports as a `Corrupt` error.

use std::fs::File;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

/// A `MAP_SHARED`, read-write mapping of a whole file. See the module documentation.
///
/// Dropping a large mapping does not unmap it on the dropping thread: `munmap` of a 64 MiB
/// segment tears down 16 Ki page-table entries and flushes TLBs (milliseconds), which would
/// stall a producer or consumer right when it moves to the next segment. The mapping goes to
/// [`super::background`] instead; nothing references it any more, so when it is unmapped does
/// not matter to anyone.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: ManuallyDrop<MmapRaw>,
    /// The range's registration with the `SIGBUS` handler (`super::sigbus`): a truncation of the
    /// file marks the mapping damaged instead of killing the process.
    protection: Option<super::sigbus::Registration>,
    /// `false` for a `PROT_READ` mapping ([`MappedFile::map_read_only`]): then only atomic loads
    /// and [`MappedFile::committed`] may touch it, and the write methods refuse.
    writable: bool,
}

/// Mappings at least this large are unmapped in the background.
const BACKGROUND_UNMAP_FROM: usize = 1 << 20;

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `self.map` is not used after this line.
        let map = unsafe { ManuallyDrop::take(&mut self.map) };
        if map.len() >= BACKGROUND_UNMAP_FROM {
            super::background::run(move || drop(map));
        }
    }
}

/// How [`MappedFile::prefault`] faults pages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefault {
    /// Map the pages readable (`MADV_POPULATE_READ`): for readers. Pages not in the page cache
    /// are read (or, beyond the written part of a file, allocated zeroed).
    Read,
    /// Map the pages writable (`MADV_POPULATE_WRITE`): for a writer's fresh file. Also runs the
    /// file system's first-write work (`page_mkwrite`: block allocation, dirty accounting), which
    /// `MAP_POPULATE` leaves to the first store into each page.
    Write,
}

impl MappedFile {
    /// Maps the first `len` bytes of `file` (opened read-write). With `populate`, the pages are
    /// faulted in up front (`MAP_POPULATE`) so that first touches do not stall the hot path.
    pub(crate) fn map(file: &File, len: usize, populate: bool) -> std::io::Result<Self> {
        let mut options = MmapOptions::new();
        options.len(len);
        if populate {
            options.populate();
        }
        let map = options.map_raw(file)?;
        Ok(MappedFile {
            protection: super::sigbus::Registration::new(map.as_mut_ptr(), map.len()),
            map: ManuallyDrop::new(map),
            writable: true,
        })
    }

    /// Maps the first `len` bytes of `file` (opened read-only) with `PROT_READ`, for tools run
    /// by users who may only read the files, or on a read-only mount. The journal opened this way
    /// only ever loads from the mapping (it never abandons reservations, registers cursors or
    /// announces futex waiters); [`MappedFile::with_slot`] and [`MappedFile::write`] refuse.
    pub(crate) fn map_read_only(file: &File, len: usize) -> std::io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(MappedFile {
            protection: super::sigbus::Registration::new(map.as_mut_ptr(), map.len()),
            map: ManuallyDrop::new(map),
            writable: false,
        })
    }

    /// Whether an access to this mapping faulted because its file was truncated (and was
    /// repaired with a zero page, see `super::sigbus`): bytes read or written since may not be
    /// the file's. The journal turns this into a `Corrupt` error naming the file.
    pub(crate) fn damaged(&self) -> bool {
        self.protection
            .as_ref()
            .is_some_and(super::sigbus::Registration::damaged)
    }

    /// Faults in the pages of `offset..offset + len` (clamped to the mapping) for this process,
    /// so that later accesses take no page fault. Meant for a background thread: it takes as long
    /// as the kernel needs to read or allocate and zero the pages. Kernels before 5.14 do not know
    /// the advice: then it touches one byte per page for [`Prefault::Read`] and does nothing for
    /// [`Prefault::Write`] (the caller mapped with `MAP_POPULATE` if it wanted that).
    pub(crate) fn prefault(&self, offset: usize, len: usize, how: Prefault) -> bool {
        let end = offset.saturating_add(len).min(self.map.len());
        let start = offset.min(end) & !(PAGE - 1);
        if start == end {
            return true;
        }
        let advice = match how {
            Prefault::Read => libc::MADV_POPULATE_READ,
            Prefault::Write => libc::MADV_POPULATE_WRITE,
        };
        // SAFETY: the range lies inside this live mapping (clamped above, start page-aligned as
        // the mapping is); MADV_POPULATE_* only faults pages in, it changes no byte, so it cannot
        // race with other processes' accesses in the sense of a data race.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().add(start).cast::<libc::c_void>(),
                end - start,
                advice,
            )
        };
        if rc == 0 {
            return true;
        }
        if how == Prefault::Read {
            let mut sum = 0u64;
            let mut p = start;
            while p < end {
                // An atomic load of the page's first word faults the page in.
                if let Some(w) = self.atomic_u64(p) {
                    sum ^= w.load(std::sync::atomic::Ordering::Relaxed);
                }
                p += PAGE;
            }
            std::hint::black_box(sum);
        }
        false
    }

    /// Turns off read-ahead on page faults in this mapping (`MADV_RANDOM`), for a mapping whose
    /// pages are written with `pwrite` before they are touched through it (a replica's segment):
    /// a fault then maps the cached page and does not read (for unwritten blocks: zero) the pages
    /// around it, which the writer overwrites next. `false` if the kernel refused the advice.
    pub(crate) fn advise_no_readahead(&self) -> bool {
        // SAFETY: the whole live mapping (page-aligned start, its own length); MADV_RANDOM only
        // changes the kernel's read-ahead policy for it and touches no byte.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().cast::<libc::c_void>(),
                self.map.len(),
                libc::MADV_RANDOM,
            )
        };
        rc == 0
    }

    #[inline]
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len())
    }

    /// The 8-byte aligned word at `offset`, as an atomic. `None` if out of bounds or misaligned.
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || !self.in_bounds(offset, 8) {
            return None;
        }
        // SAFETY:
        // * the pointer is inside the mapping (checked above) and 8-byte aligned (the mapping is
        //   page-aligned and `offset` is a multiple of 8);
        // * the mapping lives as long as `&self`, and the file is never truncated while mapped;
        // * every concurrent access to this word, in any process, is atomic (journal protocol),
        //   and `AtomicU64` has the same layout as `u64`, so any bit pattern is valid;
        // * on a read-only mapping, the journal opened read-only only loads (see
        //   `map_read_only`), and atomic loads from read-only memory are allowed.
        Some(unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u64>()) })
    }

    /// `count` consecutive 8-byte aligned words from `offset`, as atomics (one bounds check for
    /// a scan). `None` if out of bounds or misaligned.
    #[inline]
    pub(crate) fn atomic_u64s(&self, offset: usize, count: usize) -> Option<&[AtomicU64]> {
        if !offset.is_multiple_of(8) || !self.in_bounds(offset, count.checked_mul(8)?) {
            return None;
        }
        // SAFETY: as in `atomic_u64`, for each of the `count` words: the whole range is inside
        // the mapping (checked above), every word 8-byte aligned, any bit pattern valid, and
        // every concurrent access atomic. A slice of `AtomicU64` hands out only atomic access.
        Some(unsafe {
            std::slice::from_raw_parts(self.map.as_mut_ptr().add(offset).cast::<AtomicU64>(), count)
        })
    }

    /// The 4-byte aligned word at `offset`, as an atomic. `None` if out of bounds or misaligned.
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || !self.in_bounds(offset, 4) {
            return None;
        }
        // SAFETY: as in `atomic_u64`, with 4-byte alignment and size.
        Some(unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u32>()) })
    }

    /// Committed, immutable bytes at `offset..offset + len`. `None` if out of bounds.
    ///
    /// # Safety
    ///
    /// No one (in any process) may write these bytes while the returned borrow lives: the caller
    /// found the range through an acquire-load of a committed record header (or a published
    /// cursor slot, or fixed header fields written before the file was published), or owns it
    /// (its own reservation or unpublished file, with no `with_slot`/`write` borrow alive).
    #[inline]
    pub(crate) unsafe fn committed(&self, offset: usize, len: usize) -> Option<&[u8]> {
        if !self.in_bounds(offset, len) {
            return None;
        }
        // SAFETY:
        // * the range is inside the live mapping (checked above) and the file is never truncated
        //   while mapped;
        // * the caller guarantees (see `# Safety`) that nothing writes these bytes while the
        //   borrow lives, so no write races with it; `u8` has no invalid bit patterns.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) })
    }

    /// Runs `f` on the writable bytes at `offset..offset + len`. Returns `None` if out of bounds.
    ///
    /// # Safety
    ///
    /// The caller must own the range exclusively for the duration of the call: a reservation it
    /// won by compare-and-swap on the record header covering it (and not lost), a file no other
    /// party can see yet, or the only writer's position of a replica. No one reads it before the
    /// caller publishes it (a release store of a header word after this call returns).
    pub(crate) unsafe fn with_slot<R>(
        &self,
        offset: usize,
        len: usize,
        f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R,
    ) -> Option<R> {
        if !self.writable || !self.in_bounds(offset, len) {
            return None;
        }
        // SAFETY:
        // * the range is inside the live mapping and the file is never truncated while mapped;
        // * the caller owns the range exclusively (see `# Safety`): no other writer writes it, and
        //   no reader reads it before it is published (after `f` returns), so the exclusive
        //   borrow is not aliased; `MaybeUninit<u8>` accepts any bytes.
        let slot = unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_mut_ptr().add(offset).cast::<MaybeUninit<u8>>(),
                len,
            )
        };
        Some(f(slot))
    }

    /// Copies `data` to `offset`. Returns `None` if out of bounds.
    ///
    /// # Safety
    ///
    /// As [`MappedFile::with_slot`]: the caller owns `offset..offset + data.len()` exclusively.
    pub(crate) unsafe fn write(&self, offset: usize, data: &[u8]) -> Option<()> {
        // SAFETY: the caller's guarantee is the one `with_slot` asks for, for the same range.
        unsafe {
            self.with_slot(offset, data.len(), |slot| {
                for (dst, src) in slot.iter_mut().zip(data) {
                    dst.write(*src);
                }
            })
        }
    }

    /// Sets every byte of the mapping to zero. Returns `None` for a read-only mapping.
    ///
    /// # Safety
    ///
    /// No one else (no thread, no process) accesses the file while this runs: the caller holds
    /// it exclusively (a recycled segment: renamed away from its name under an exclusive `flock`
    /// that every process mapping a segment would conflict with).
    pub(crate) unsafe fn zero_all(&self) -> Option<()> {
        // SAFETY: the caller's guarantee covers the whole mapping; `with_slot` checks bounds and
        // that the mapping is writable.
        unsafe {
            self.with_slot(0, self.map.len(), |slot| {
                // `MaybeUninit<u8>` has the layout of `u8`; `fill` compiles to a memset.
                slot.fill(MaybeUninit::new(0));
            })
        }
    }

    /// Drops this process's page-table entries for the pages of `offset..offset + len` (but the
    /// last one if the range ends inside it) with `MADV_DONTNEED`: one TLB flush for them all. The file's pages stay in the page
    /// cache, dirty or not, with every byte stored through the mapping: the next access maps the
    /// cached page again (a minor fault). Meant for a writer that will not touch the range again,
    /// just before it writes the range back: write-back write-protects each page still mapped
    /// writable and flushes the TLBs of every CPU running this process, one page at a time.
    /// Only a hint: `false` if the kernel refused it, which changes nothing.
    pub(crate) fn drop_page_mappings(&self, offset: usize, len: usize) -> bool {
        let end = offset.saturating_add(len).min(self.map.len()) & !(PAGE - 1);
        let start = offset.min(end) & !(PAGE - 1);
        if start == end {
            return true;
        }
        // SAFETY: the range lies inside this live mapping and is page-aligned (the mapping is).
        // On a MAP_SHARED file mapping MADV_DONTNEED changes no byte of the file: every store
        // made through the mapping is in the page cache already, and later accesses, by any
        // thread, fault the same pages in again, so references into the range stay valid.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().add(start).cast::<libc::c_void>(),
                end - start,
                libc::MADV_DONTNEED,
            )
        };
        rc == 0
    }

    /// Writes dirty pages of `offset..offset + len` back to the file (`msync(MS_SYNC)`).
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> std::io::Result<()> {
        let end = (offset.saturating_add(len)).min(self.map.len());
        let start = offset.min(end);
        if start == end {
            return Ok(());
        }
        self.map.flush_range(start, end - start)
    }
}

/// The page size assumed for pre-faulting (x86-64 and most aarch64 kernels; a larger page only
/// makes the touch loop do more work than needed).
const PAGE: usize = 4096;

/// Allocates disk blocks for the first `len` bytes of `file` (`fallocate`), so that writes
/// through a mapping cannot fail with SIGBUS for lack of space later. Filesystems that do not
/// support it are left sparse.
pub(crate) fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: `file` is an open descriptor for the duration of the call; fallocate only
    // allocates blocks and does not touch our memory.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(err),
    }
}

/// Whether `file` lives on tmpfs (memory, no disk behind it).
pub(crate) fn on_tmpfs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `statfs` is plain data for which all-zero bytes are valid; `fstatfs` fills it from
    // an open descriptor and touches no other memory.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `file` is open for the duration of the call.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut buf) };
    rc == 0 && buf.f_type == libc::TMPFS_MAGIC
}
