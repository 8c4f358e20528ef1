//! A file mapping shared by two processes: the floor's only tool.
//!
//! This is the raw mechanism every same-host IPC system builds on: bytes in a shared mapping and
//! one atomic word per message, stored with `Release` by the writer and loaded with `Acquire` by
//! the reader. No repliq code is involved.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use memmap2::MmapMut;

/// A shared, writable file mapping. The creating side removes the file when dropped.
#[derive(Debug)]
pub struct SharedMap {
    map: MmapMut,
    path: PathBuf,
    owner: bool,
}

/// Where shared files go: tmpfs (`/dev/shm`) when the machine has it.
pub fn shm_dir() -> PathBuf {
    let dev_shm = Path::new("/dev/shm");
    if dev_shm.is_dir() {
        dev_shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl SharedMap {
    /// Creates a zero-filled file of `len` bytes named `name` in [`shm_dir`] and maps it.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        let path = shm_dir().join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(len as u64)?;
        // SAFETY: the file was just created for this benchmark; only this process and the child
        // it starts map it, and nobody truncates it while it is mapped.
        let map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&file)? };
        Ok(Self {
            map,
            path,
            owner: true,
        })
    }

    /// Maps an existing file created by [`SharedMap::create`] in another process.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        // SAFETY: as in `create`: the benchmark's own file, never truncated while mapped.
        let map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&file)? };
        Ok(Self {
            map,
            path: path.to_path_buf(),
            owner: false,
        })
    }

    /// The file's path, for the other process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The atomic word at byte offset `off`.
    ///
    /// # Panics
    ///
    /// If `off` is not 8-aligned or the word does not fit in the mapping.
    pub fn atomic(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.map.len());
        // SAFETY: the mapping is page-aligned so `base + off` is 8-aligned, the word lies inside
        // the mapping, which lives as long as `&self`; all accesses to this word, in both
        // processes, are atomic.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// Copies `bytes` into the mapping at `off`. The caller publishes them with a `Release`
    /// store afterwards; the other process reads them only after its `Acquire` load.
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.map.len());
        // SAFETY: the range is inside the mapping (checked above). The protocol gives this
        // process exclusive use of the range until it publishes it, so nobody reads it
        // concurrently; raw pointers avoid creating a `&mut` to shared memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_ptr().add(off).cast_mut(),
                bytes.len(),
            );
        }
    }

    /// Reads the little-endian `u64` at `off` (not atomically: after an `Acquire` load that
    /// published it).
    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.map.len());
        // SAFETY: inside the mapping (checked above); the writer published these bytes before
        // the caller's `Acquire` load and does not touch them until the reader releases them.
        let v = unsafe { std::ptr::read_unaligned(self.map.as_ptr().add(off).cast::<u64>()) };
        u64::from_le(v)
    }

    /// Reads one byte at `off` so a reader touches the payload's last cache line.
    pub fn read_u8(&self, off: usize) -> u8 {
        self.map[off]
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Layout of a single-producer, single-consumer ring of fixed-size slots in a [`SharedMap`].
///
/// Offset 0 holds the reader's consumed count; slots start at 128. Each slot is
/// `[u64 sequence (the one atomic)][payload]`, rounded up to whole cache lines.
#[derive(Debug, Clone, Copy)]
pub struct Ring {
    /// Number of slots.
    pub slots: u64,
    /// Bytes per slot.
    pub stride: usize,
}

impl Ring {
    const HEADER: usize = 128;

    /// A ring for payloads of `size` bytes.
    pub fn new(size: usize, slots: u64) -> Self {
        Self {
            slots,
            stride: (8 + size).div_ceil(64) * 64,
        }
    }

    /// Bytes the mapping needs.
    pub fn bytes(&self) -> usize {
        Self::HEADER + self.stride * self.slots as usize
    }

    /// Offset of the consumed counter.
    pub fn consumed_off(&self) -> usize {
        0
    }

    /// Offset of message `i`'s sequence word; its payload follows 8 bytes later.
    pub fn slot_off(&self, i: u64) -> usize {
        Self::HEADER + (i % self.slots) as usize * self.stride
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn ring_layout_is_cache_line_aligned() {
        let r = Ring::new(64, 16);
        assert_eq!(r.stride, 128);
        assert_eq!(r.slot_off(16), r.slot_off(0));
        assert_eq!(r.slot_off(1) % 64, 0);
        assert_eq!(r.bytes(), 128 + 16 * 128);
    }

    #[test]
    fn two_mappings_of_one_file_share_words() {
        let name = format!("repliq-bench-test-{}", std::process::id());
        let a = SharedMap::create(&name, 4096).unwrap();
        let b = SharedMap::open(a.path()).unwrap();
        a.write(72, &7u64.to_le_bytes());
        a.atomic(64).store(5, Ordering::Release);
        assert_eq!(b.atomic(64).load(Ordering::Acquire), 5);
        assert_eq!(b.read_u64(72), 7);
        drop(b);
        drop(a);
        assert!(!shm_dir().join(&name).exists());
    }
}
