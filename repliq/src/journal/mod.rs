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
mod files;
pub(crate) mod format;
pub(crate) mod header;
mod info;
pub(crate) mod lease;
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
mod retention;
pub(crate) mod schema_file;
// Byte-level access for replication; without the transport only part of it is used.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) mod replica;
pub(crate) mod segment;
mod spare;
#[cfg(all(test, not(repliq_loom)))]
mod test;
mod wait;
pub(crate) mod walk;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

pub use appender::Durability;
pub(crate) use appender::{Appender, Attempt};
pub(crate) use files::{publish_file, publish_file_with, temp_path};
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
use spare::SpareState;
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

impl Journal {
    /// Creates the queue directory and its meta file, or opens the queue if it already exists.
    /// A new meta file starts with the `initial` replication policy (by default the node policy
    /// of the directory's parent, see [`NodePolicy`]). `Ok((journal, created))`.
    // Used by the replica service (feature `replication`) and the tests.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub(crate) fn create_or_open(
        dir: &Path,
        config: &MetaConfig,
        populate: bool,
        initial: InitialPolicy,
    ) -> Result<(Arc<Journal>, bool)> {
        Self::create_or_open_described(dir, config, populate, initial, None)
    }

    /// [`Journal::create_or_open`] for a typed queue: `schema` (its `schema.json` text) is in
    /// the directory *before* the meta file makes the queue exist, so that nobody (a replication
    /// stream's `Hello`, a tool) finds the queue without its schema. If another process created
    /// the queue with another type first, the schema this call put there is taken back.
    pub(crate) fn create_or_open_described(
        dir: &Path,
        config: &MetaConfig,
        populate: bool,
        initial: InitialPolicy,
        schema: Option<&str>,
    ) -> Result<(Arc<Journal>, bool)> {
        let created = if meta::meta_path(dir).exists() {
            false
        } else {
            let policy = initial.resolve(dir)?;
            perms::create_dir_all(dir)
                .map_err(|e| QueueError::io(format!("creating directory {}", dir.display()), e))?;
            let described = match schema {
                Some(text) => schema_file::publish(dir, text)?,
                None => false,
            };
            let created = meta::create(dir, config, policy.as_ref())?;
            if described && !created {
                // Lost the race: keep our schema only if the winner's queue has our type.
                let theirs = meta::read_config(dir)?;
                if theirs.fingerprint != config.fingerprint || theirs.type_name != config.type_name
                {
                    schema_file::retract(dir, schema.unwrap_or_default());
                }
            }
            created
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

    /// `Ok` if the primary's lease allows a write now (see [`lease`]); otherwise the error a
    /// producer returns.
    #[inline]
    pub(crate) fn check_lease(&self) -> Result<()> {
        lease::check(&self.meta).map_err(|expired| {
            crate::ReplicationError::LeaseExpired {
                path: self.dir.clone(),
                ran_out_ago: match expired {
                    lease::Expired::RanOut(ago) => Some(ago),
                    lease::Expired::Revoked | lease::Expired::OtherBoot => None,
                },
            }
            .into()
        })
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

    /// The queue's segment lock (an exclusive `flock` on the meta file), held while retention
    /// deletes segments and while a producer publishes a new one. Released on drop.
    pub(super) fn segment_lock(&self) -> Result<File> {
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
}
