//! On-disk layout constants of journal format version 1. `docs/FORMAT.md` describes the same
//! layout in prose; keep the two in step (the fixture test in `journal/test.rs` checks it).

/// Magic number at offset 0 of the meta file.
pub(crate) const META_MAGIC: [u8; 8] = *b"RPLQMETA";
/// Magic number at offset 0 of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"RPLQSEGM";
/// The format version this code writes and reads (segment files; the meta file of a queue
/// created by this code has [`META_VERSION`]).
pub const FORMAT_VERSION: u32 = 1;
/// The meta file version new queues get: 2 = consumer cursor slots carry a generation and are
/// reused after removal. Meta files of version 1 are still read and written (their slots are
/// never reused); builds that know only version 1 refuse version 2.
pub(crate) const META_VERSION: u32 = 2;
/// The oldest meta file version this code opens.
pub(crate) const META_VERSION_MIN: u32 = 1;

/// The meta file's name inside a queue directory.
pub(crate) const META_FILE: &str = "queue.meta";
/// Segment files are named `{first_seq:020}.seg`.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

// ---- meta file -------------------------------------------------------------------------------
pub(crate) const META_SIZE: usize = 8192;
pub(crate) const M_MAGIC: usize = 0;
pub(crate) const M_VERSION: usize = 8;
pub(crate) const M_SIZE: usize = 12;
pub(crate) const M_FINGERPRINT: usize = 16;
pub(crate) const M_SEGMENT_SIZE: usize = 24;
pub(crate) const M_CAPACITY: usize = 32;
pub(crate) const M_INDEX_INTERVAL: usize = 40;
pub(crate) const M_MAX_PAYLOAD: usize = 44;
pub(crate) const M_LEASE_MS: usize = 48;
pub(crate) const M_NAME_LEN: usize = 52;
pub(crate) const M_CREATED: usize = 56;
pub(crate) const M_NAME: usize = 64;
pub(crate) const MAX_TYPE_NAME: usize = 256;
/// crc32c of bytes `0..M_CRC`.
pub(crate) const M_CRC: usize = 320;
pub(crate) const M_EPOCH: usize = 512;
/// Replication policy words (see `policy.rs`): role, required acknowledgements, ack timeout.
pub(crate) const M_ROLE: usize = 520;
pub(crate) const M_REQUIRED_ACKS: usize = 524;
pub(crate) const M_ACK_TIMEOUT_MS: usize = 528;
/// u64: times a replica replaced live segment files (a failover's move-aside, a resync). A
/// reader that sees it change maps the files afresh (its old mapping holds records that are
/// gone). Zero in files written before the word existed.
pub(crate) const M_REWRITES: usize = 536;
/// u64: until when producers may write, as `CLOCK_MONOTONIC` nanoseconds (the primary's lease,
/// published by the election; see `lease.rs`): 0 when no lease is in force, 1 when revoked.
pub(crate) const M_LEASE_UNTIL: usize = 544;
/// u64: the boot the lease deadline was written in (the first 64 bits of the kernel's boot id):
/// the monotonic clock starts again at boot, so a deadline from another boot counts as run out.
pub(crate) const M_LEASE_BOOT: usize = 552;
pub(crate) const M_ACKED: usize = 576;
/// Futex word bumped when `M_ACKED` advances, and the count of its waiters.
pub(crate) const M_ACK_NOTIFY: usize = 584;
pub(crate) const M_ACK_WAITERS: usize = 588;
pub(crate) const M_DATA_NOTIFY: usize = 640;
pub(crate) const M_DATA_WAITERS: usize = 644;
pub(crate) const M_SPACE_NOTIFY: usize = 704;
pub(crate) const M_SPACE_WAITERS: usize = 708;
pub(crate) const M_CURSORS: usize = 1024;
pub(crate) const CURSOR_SLOTS: usize = 64;
pub(crate) const CURSOR_ENTRY: usize = 64;
pub(crate) const C_STATE: usize = 0;
pub(crate) const C_NEXT: usize = 8;
pub(crate) const C_FLAGS: usize = 16;
pub(crate) const C_NAME_LEN: usize = 20;
pub(crate) const C_NAME: usize = 24;
/// Longest consumer name, in bytes of UTF-8.
pub const MAX_CONSUMER_NAME: usize = 40;

// ---- segment file ----------------------------------------------------------------------------
pub(crate) const S_MAGIC: usize = 0;
pub(crate) const S_VERSION: usize = 8;
pub(crate) const S_DATA_START: usize = 12;
pub(crate) const S_FIRST_SEQ: usize = 16;
pub(crate) const S_SEGMENT_SIZE: usize = 24;
pub(crate) const S_FINGERPRINT: usize = 32;
pub(crate) const S_INDEX_INTERVAL: usize = 40;
pub(crate) const S_INDEX_ENTRIES: usize = 44;
/// crc32c of bytes `0..S_CRC`.
pub(crate) const S_CRC: usize = 48;
pub(crate) const S_INDEX: usize = 64;

// ---- record ----------------------------------------------------------------------------------
/// Record header length; the payload follows at a 16-byte aligned offset.
pub(crate) const RECORD_HEADER: usize = 32;
pub(crate) const R_STATE: usize = 0;
pub(crate) const R_SEQ: usize = 8;
pub(crate) const R_CRC: usize = 16;
pub(crate) const R_LEN: usize = 20;
pub(crate) const R_TIME: usize = 24;
/// Records start at multiples of this.
pub(crate) const RECORD_ALIGN: usize = 16;

/// Smallest segment size accepted.
pub(crate) const MIN_SEGMENT_SIZE: u64 = 4096;
/// Largest segment size accepted (record offsets in the index are 32-bit).
pub(crate) const MAX_SEGMENT_SIZE: u64 = 1 << 32;

pub(crate) const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Number of index entries and the data start offset for a segment of `size` bytes.
pub(crate) fn segment_geometry(size: u64, index_interval: u32) -> (u32, usize) {
    let max_records = size / RECORD_HEADER as u64;
    let entries = max_records.div_ceil(u64::from(index_interval.max(1)));
    let entries = u32::try_from(entries).unwrap_or(u32::MAX);
    let data_start = align_up(S_INDEX + 4 * entries as usize, 64);
    (entries, data_start)
}

/// The extent (bytes from header start to the next record) of a committed record.
pub(crate) const fn committed_extent(len: usize) -> usize {
    align_up(RECORD_HEADER + len, RECORD_ALIGN)
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// crc32c of a record: over its sequence number, length and timestamp (little-endian) and then
/// the payload. (`raw::crc`: the SSE 4.2 instruction inlined, the same value as the `crc32c`
/// crate's.)
#[inline]
pub(crate) fn record_crc(seq: u64, len: u32, time: u64, payload: &[u8]) -> u32 {
    crate::raw::crc::record_crc(seq, len, time, payload)
}
