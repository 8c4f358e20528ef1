//! The meta file: a queue's identity (type, geometry, capacity) and its shared mutable words
//! (replication epoch and acks, futex words, named consumer cursors).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::format::*;
use crate::raw::MappedFile;
use crate::{QueueError, Result};

/// The immutable part of the meta file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaConfig {
    pub type_name: String,
    pub fingerprint: u64,
    pub segment_size: u64,
    pub capacity: u64,
    pub index_interval: u32,
    pub max_payload: u32,
    pub lease_ms: u32,
    pub created_unix_nanos: u64,
}

impl MetaConfig {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; META_SIZE];
        b[M_MAGIC..M_MAGIC + 8].copy_from_slice(&META_MAGIC);
        b[M_VERSION..M_VERSION + 4].copy_from_slice(&META_VERSION.to_le_bytes());
        b[M_SIZE..M_SIZE + 4].copy_from_slice(&(META_SIZE as u32).to_le_bytes());
        b[M_FINGERPRINT..M_FINGERPRINT + 8].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[M_SEGMENT_SIZE..M_SEGMENT_SIZE + 8].copy_from_slice(&self.segment_size.to_le_bytes());
        b[M_CAPACITY..M_CAPACITY + 8].copy_from_slice(&self.capacity.to_le_bytes());
        b[M_INDEX_INTERVAL..M_INDEX_INTERVAL + 4]
            .copy_from_slice(&self.index_interval.to_le_bytes());
        b[M_MAX_PAYLOAD..M_MAX_PAYLOAD + 4].copy_from_slice(&self.max_payload.to_le_bytes());
        b[M_LEASE_MS..M_LEASE_MS + 4].copy_from_slice(&self.lease_ms.to_le_bytes());
        let name = self.type_name.as_bytes();
        let name = &name[..name.len().min(MAX_TYPE_NAME)];
        b[M_NAME_LEN..M_NAME_LEN + 4].copy_from_slice(&(name.len() as u32).to_le_bytes());
        b[M_CREATED..M_CREATED + 8].copy_from_slice(&self.created_unix_nanos.to_le_bytes());
        b[M_NAME..M_NAME + name.len()].copy_from_slice(name);
        let crc = crc32c::crc32c(&b[..M_CRC]);
        b[M_CRC..M_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks settings received from elsewhere (a primary's `Hello`) before anything is created
    /// from them: the rules `decode` enforces, plus a non-empty type name and capacity.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(format!(
                "segment size {} is not a multiple of 4096 in {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            ));
        }
        if self.index_interval == 0 {
            return Err("index interval 0".into());
        }
        if self.capacity == 0 {
            return Err("capacity 0".into());
        }
        if self.type_name.is_empty() || self.type_name.len() > MAX_TYPE_NAME {
            return Err(format!(
                "message type name of {} bytes (1..={MAX_TYPE_NAME})",
                self.type_name.len()
            ));
        }
        let (_, data_start) = segment_geometry(self.segment_size, self.index_interval);
        if data_start as u64 + RECORD_HEADER as u64 + u64::from(self.max_payload)
            > self.segment_size
        {
            return Err(format!(
                "max payload {} does not fit a segment of {} bytes",
                self.max_payload, self.segment_size
            ));
        }
        Ok(())
    }

    /// Parses and checks the fixed header. Every failure names the file and offset.
    pub(crate) fn decode(path: &Path, b: &[u8]) -> Result<Self> {
        let corrupt = |offset: usize, reason: String| QueueError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        if b.len() < META_SIZE {
            return Err(corrupt(
                b.len(),
                format!("meta file is {} bytes, expected {META_SIZE}", b.len()),
            ));
        }
        if b[M_MAGIC..M_MAGIC + 8] != META_MAGIC {
            return Err(corrupt(
                M_MAGIC,
                "bad magic number (not a repliq meta file)".into(),
            ));
        }
        let version = read_u32(b, M_VERSION);
        if !(META_VERSION_MIN..=META_VERSION).contains(&version) {
            return Err(corrupt(
                M_VERSION,
                format!(
                    "unsupported meta format version {version} (this build reads \
                     {META_VERSION_MIN} to {META_VERSION})"
                ),
            ));
        }
        let stored = read_u32(b, M_CRC);
        let actual = crc32c::crc32c(&b[..M_CRC]);
        if stored != actual {
            return Err(corrupt(
                M_CRC,
                format!(
                    "meta header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
                ),
            ));
        }
        let name_len = read_u32(b, M_NAME_LEN) as usize;
        if name_len > MAX_TYPE_NAME {
            return Err(corrupt(
                M_NAME_LEN,
                format!("type name length {name_len} too large"),
            ));
        }
        let type_name = std::str::from_utf8(&b[M_NAME..M_NAME + name_len])
            .map_err(|e| corrupt(M_NAME, format!("type name is not UTF-8: {e}")))?
            .to_owned();
        let cfg = MetaConfig {
            type_name,
            fingerprint: read_u64(b, M_FINGERPRINT),
            segment_size: read_u64(b, M_SEGMENT_SIZE),
            capacity: read_u64(b, M_CAPACITY),
            index_interval: read_u32(b, M_INDEX_INTERVAL),
            max_payload: read_u32(b, M_MAX_PAYLOAD),
            lease_ms: read_u32(b, M_LEASE_MS),
            created_unix_nanos: read_u64(b, M_CREATED),
        };
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&cfg.segment_size)
            || !cfg.segment_size.is_multiple_of(4096)
        {
            return Err(corrupt(
                M_SEGMENT_SIZE,
                format!("invalid segment size {}", cfg.segment_size),
            ));
        }
        if cfg.index_interval == 0 {
            return Err(corrupt(M_INDEX_INTERVAL, "index interval 0".into()));
        }
        let (_, data_start) = segment_geometry(cfg.segment_size, cfg.index_interval);
        if data_start as u64 + RECORD_HEADER as u64 + u64::from(cfg.max_payload) > cfg.segment_size
        {
            return Err(corrupt(
                M_MAX_PAYLOAD,
                format!("max payload {} does not fit a segment", cfg.max_payload),
            ));
        }
        Ok(cfg)
    }
}

/// The mapped meta file of an open queue.
#[derive(Debug)]
pub(crate) struct Meta {
    pub path: PathBuf,
    pub config: MetaConfig,
    /// The meta file's format version (1 or 2; see [`META_VERSION`]).
    pub version: u32,
    map: MappedFile,
}

/// A consumer name copied out of a cursor slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotName {
    bytes: [u8; MAX_CONSUMER_NAME],
    len: usize,
}

impl SlotName {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl PartialEq<[u8]> for SlotName {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for SlotName {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

pub(crate) fn meta_path(dir: &Path) -> PathBuf {
    dir.join(META_FILE)
}

/// Reads the configuration part of the meta file of the queue in `dir` (read-only).
pub(crate) fn read_config(dir: &Path) -> Result<MetaConfig> {
    let path = meta_path(dir);
    let file =
        File::open(&path).map_err(|e| QueueError::io(format!("opening {}", path.display()), e))?;
    let mut head = vec![0u8; META_SIZE];
    read_exact_at(&file, &mut head, 0, &path)?;
    MetaConfig::decode(&path, &head)
}

/// Creates the meta file atomically (temp file + hard link, which fails if it exists).
/// Returns `Ok(false)` if another process created it first. `policy`, if given, is written into
/// the policy words before the file is published, so no handle sees the queue without it.
pub(crate) fn create(
    dir: &Path,
    config: &MetaConfig,
    policy: Option<&super::Policy>,
) -> Result<bool> {
    let mut bytes = config.encode();
    if let Some(p) = policy {
        p.encode_into(&mut bytes);
    }
    let path = meta_path(dir);
    super::publish_file(dir, &path, &bytes, META_SIZE as u64)
}

impl Meta {
    /// Opens and maps the meta file; `read_only` maps it with `PROT_READ` from a read-only
    /// descriptor (for tools).
    /// `Err` if the meta file was truncated under this mapping (see `raw::sigbus`): its words
    /// read since (cursors, acknowledgements, policy) may be zeros instead of the file's.
    pub(crate) fn check_intact(&self) -> Result<()> {
        if self.map.damaged() {
            return Err(QueueError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                reason: "the meta file was truncated while mapped; this queue cannot be used \
                         here until it is repaired"
                    .into(),
            });
        }
        Ok(())
    }

    pub(crate) fn open(dir: &Path, read_only: bool) -> Result<Meta> {
        let path = meta_path(dir);
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    let context = format!(
                        "no queue at {} yet ({} does not exist)",
                        dir.display(),
                        path.display()
                    );
                    QueueError::io(context, e)
                } else {
                    QueueError::io(format!("opening {}", path.display()), e)
                }
            })?;
        let len = file
            .metadata()
            .map_err(|e| QueueError::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        if len < META_SIZE as u64 {
            return Err(QueueError::Corrupt {
                path,
                offset: len,
                reason: format!("meta file is {len} bytes, expected {META_SIZE}"),
            });
        }
        let mut head = vec![0u8; META_SIZE];
        read_exact_at(&file, &mut head, 0, &path)?;
        let config = MetaConfig::decode(&path, &head)?;
        let version = read_u32(&head, M_VERSION);
        let map = if read_only {
            MappedFile::map_read_only(&file, META_SIZE)
        } else {
            MappedFile::map(&file, META_SIZE, false)
        }
        .map_err(|e| QueueError::io(format!("mapping {}", path.display()), e))?;
        Ok(Meta {
            path,
            config,
            version,
            map,
        })
    }

    #[inline]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // The offsets are constants inside META_SIZE and 8-aligned; the mapping is META_SIZE long.
        self.map
            .atomic_u64(off)
            .unwrap_or_else(|| unreachable!("meta offset {off} is a constant inside the file"))
    }

    #[inline]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.map
            .atomic_u32(off)
            .unwrap_or_else(|| unreachable!("meta offset {off} is a constant inside the file"))
    }

    /// Whether removed consumer cursor slots are reused (meta format version 2).
    #[inline]
    pub(crate) fn reuses_slots(&self) -> bool {
        self.version >= 2
    }

    #[inline]
    pub(crate) fn epoch(&self) -> &AtomicU64 {
        self.u64_at(M_EPOCH)
    }
    /// Bumped each time a replica replaces live segment files ([`M_REWRITES`]).
    #[inline]
    pub(crate) fn rewrites(&self) -> &AtomicU64 {
        self.u64_at(M_REWRITES)
    }
    /// The primary's lease deadline ([`M_LEASE_UNTIL`]).
    #[inline]
    pub(crate) fn lease_until(&self) -> &AtomicU64 {
        self.u64_at(M_LEASE_UNTIL)
    }
    /// The boot the lease deadline belongs to ([`M_LEASE_BOOT`]).
    #[inline]
    pub(crate) fn lease_boot(&self) -> &AtomicU64 {
        self.u64_at(M_LEASE_BOOT)
    }
    #[inline]
    pub(crate) fn role(&self) -> &AtomicU32 {
        self.u32_at(M_ROLE)
    }
    #[inline]
    pub(crate) fn required_acks(&self) -> &AtomicU32 {
        self.u32_at(M_REQUIRED_ACKS)
    }
    #[inline]
    pub(crate) fn ack_timeout_ms(&self) -> &AtomicU64 {
        self.u64_at(M_ACK_TIMEOUT_MS)
    }
    #[inline]
    pub(crate) fn acked(&self) -> &AtomicU64 {
        self.u64_at(M_ACKED)
    }
    #[inline]
    pub(crate) fn ack_notify(&self) -> &AtomicU32 {
        self.u32_at(M_ACK_NOTIFY)
    }
    #[inline]
    pub(crate) fn ack_waiters(&self) -> &AtomicU32 {
        self.u32_at(M_ACK_WAITERS)
    }
    #[inline]
    pub(crate) fn data_notify(&self) -> &AtomicU32 {
        self.u32_at(M_DATA_NOTIFY)
    }
    #[inline]
    pub(crate) fn data_waiters(&self) -> &AtomicU32 {
        self.u32_at(M_DATA_WAITERS)
    }
    #[inline]
    pub(crate) fn space_notify(&self) -> &AtomicU32 {
        self.u32_at(M_SPACE_NOTIFY)
    }
    #[inline]
    pub(crate) fn space_waiters(&self) -> &AtomicU32 {
        self.u32_at(M_SPACE_WAITERS)
    }

    #[inline]
    pub(crate) fn cursor_state(&self, slot: usize) -> &AtomicU64 {
        self.u64_at(M_CURSORS + slot * CURSOR_ENTRY + C_STATE)
    }
    #[inline]
    pub(crate) fn cursor_next(&self, slot: usize) -> &AtomicU64 {
        self.u64_at(M_CURSORS + slot * CURSOR_ENTRY + C_NEXT)
    }
    /// The name length field of a cursor slot, as stored (callers check it).
    pub(crate) fn cursor_name_len(&self, slot: usize) -> usize {
        let base = M_CURSORS + slot * CURSOR_ENTRY;
        self.u32_at(base + C_NAME_LEN).load(Ordering::Relaxed) as usize
    }

    /// The flags of a cursor slot (meaningful for an ACTIVE slot: published before it became
    /// ACTIVE).
    pub(crate) fn cursor_flags(&self, slot: usize) -> u32 {
        let base = M_CURSORS + slot * CURSOR_ENTRY;
        self.u32_at(base + C_FLAGS).load(Ordering::Relaxed)
    }

    /// A copy of the name of a cursor slot. Meaningful for a slot acquire-loaded as ACTIVE: its
    /// claimer stored the name before its release-CAS to ACTIVE. The bytes are read with atomic
    /// loads (the slot may be reused meanwhile, since meta version 2: callers that must know the
    /// name belongs to the generation they saw load the state word again afterwards).
    pub(crate) fn cursor_name(&self, slot: usize) -> SlotName {
        let base = M_CURSORS + slot * CURSOR_ENTRY;
        let len = self.cursor_name_len(slot).min(MAX_CONSUMER_NAME);
        let mut bytes = [0u8; MAX_CONSUMER_NAME];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            let word = self.u32_at(base + C_NAME + 4 * i).load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        SlotName { bytes, len }
    }

    /// Writes the name and flags of a cursor slot this process holds in the CLAIMING state
    /// (atomic stores, published by the caller's release-CAS to ACTIVE).
    pub(crate) fn write_cursor_name(&self, slot: usize, name: &[u8], flags: u32) {
        let base = M_CURSORS + slot * CURSOR_ENTRY;
        let name = &name[..name.len().min(MAX_CONSUMER_NAME)];
        let mut bytes = [0u8; MAX_CONSUMER_NAME];
        bytes[..name.len()].copy_from_slice(name);
        self.u32_at(base + C_FLAGS).store(flags, Ordering::Relaxed);
        self.u32_at(base + C_NAME_LEN)
            .store(name.len() as u32, Ordering::Relaxed);
        for (i, chunk) in bytes.chunks_exact(4).enumerate() {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.u32_at(base + C_NAME + 4 * i)
                .store(word, Ordering::Relaxed);
        }
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.map
            .flush_range(0, META_SIZE)
            .map_err(|e| QueueError::io(format!("msync {}", self.path.display()), e))
    }

    #[inline]
    pub(crate) fn load_cursor(&self, slot: usize) -> u64 {
        self.cursor_next(slot).load(Ordering::Acquire)
    }
}

pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, path: &Path) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            QueueError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: format!("file too short for {} bytes at this offset", buf.len()),
            }
        } else {
            QueueError::io(format!("reading {}", path.display()), e)
        }
    })
}
