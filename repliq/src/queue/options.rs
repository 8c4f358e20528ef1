//! [`QueueOptions`]: how a queue is created and how a handle reads and writes it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{DEFAULT_CONSUMER, JournalQueue};
use crate::journal::format::{MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, RECORD_HEADER};
use crate::journal::meta::MetaConfig;
use crate::journal::{Durability, Journal};
use crate::{Message, QueueError, Result};

/// Where a new consumer cursor or a [`Tailer`](super::Tailer) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// The first message still stored. The default.
    #[default]
    Earliest,
    /// After the last message written so far.
    Latest,
    /// At this sequence number.
    Seq(u64),
}

/// Options for creating or opening a queue. Every setting has a documented default.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub(crate) capacity: u64,
    pub(crate) segment_size: u64,
    pub(crate) index_interval: u32,
    pub(crate) max_message_size: u32,
    pub(crate) lease_timeout: Duration,
    pub(crate) durability: Durability,
    pub(crate) consumer: String,
    /// Register the consumer cursor at the first read, not at open ([`QueueOptions::producer`]).
    pub(crate) lazy_consumer: bool,
    /// Refuse to open an existing queue whose stored capacity differs (`new(path, capacity)`).
    pub(crate) require_capacity: bool,
    pub(crate) start: StartAt,
    pub(crate) verify_checksums: bool,
    pub(crate) prefault: bool,
    pub(crate) delete_consumed: bool,
    pub(crate) precise_timestamps: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 1 << 20,
            segment_size: 16 << 20,
            index_interval: 64,
            max_message_size: 1 << 20,
            lease_timeout: Duration::from_millis(200),
            durability: Durability::PageCache,
            consumer: DEFAULT_CONSUMER.to_owned(),
            lazy_consumer: false,
            require_capacity: false,
            start: StartAt::Earliest,
            verify_checksums: true,
            prefault: false,
            delete_consumed: false,
            precise_timestamps: false,
        }
    }
}

impl QueueOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Backlog bound: messages written but not consumed by the slowest consumer cursor
    /// (default 1 048 576). Stored at creation.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }
    /// Size of each segment file, a multiple of 4096 between 4 KiB and 4 GiB (default 16 MiB).
    /// Stored at creation.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
    /// Every `n`-th record is indexed (default 64). Stored at creation.
    pub fn index_interval(mut self, n: u32) -> Self {
        self.index_interval = n;
        self
    }
    /// Largest serialized message (default 1 MiB, at most what fits a segment). Stored at
    /// creation; a writer reserves this much (or the rest of the segment) per message.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// How long a writer may hold a reservation before others may abandon it (default 200 ms).
    /// This bounds how long a producer killed mid-write blocks the others. A live writer that
    /// was too slow retries transparently. Stored at creation.
    pub fn lease_timeout(mut self, timeout: Duration) -> Self {
        self.lease_timeout = timeout;
        self
    }
    /// How enqueued messages are made durable (default [`Durability::PageCache`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// The consumer cursor name of the handle (default [`DEFAULT_CONSUMER`]); 1 to 40 bytes.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }
    /// A handle for producing: it registers its consumer cursor only if it ever reads (or asks
    /// for its `backlog`), not when it opens. A handle's cursor holds back capacity and retention for its consumer name
    /// (by default [`DEFAULT_CONSUMER`](crate::DEFAULT_CONSUMER)); a producer whose messages are
    /// read under other names (`consumer("risk")`) would otherwise fill the queue for a
    /// "default" consumer that never comes, and `enqueue` would return
    /// [`QueueError::Full`](crate::QueueError::Full) after `capacity` messages.
    pub fn producer(mut self) -> Self {
        self.lazy_consumer = true;
        self
    }
    /// Makes [`create`](Self::create) refuse an existing queue whose stored capacity is not
    /// [`capacity`](Self::capacity) (what `new(path, capacity)` does), instead of keeping the
    /// stored one silently.
    pub(crate) fn require_capacity(mut self) -> Self {
        self.require_capacity = true;
        self
    }
    /// Where the consumer cursor starts if it does not exist yet (default [`StartAt::Earliest`]).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }
    /// Check each record's crc32c when reading (default `true`).
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }
    /// Keep the pages ahead of each producer and reader of this handle faulted in (default
    /// `false`): a background thread maps the next pages of the segment (a few milliseconds of
    /// writing ahead of a producer, 2–32 MiB; 4 MiB ahead of a reader) into this process before
    /// the hot path gets there, so it takes no page faults; the cost is more resident memory and
    /// that background work.
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Delete segment files that every consumer cursor has passed, automatically (default
    /// `false`: keep everything, e.g. for tailers reading history). Producers of this handle run
    /// it in a background thread once per segment written; [`JournalQueue::purge_consumed`] runs
    /// it on demand. Readers that still map a deleted segment keep reading it; its space is freed
    /// when the last mapping goes away.
    pub fn delete_consumed_segments(mut self, on: bool) -> Self {
        self.delete_consumed = on;
        self
    }

    /// Stamp each record this handle writes with the full-resolution wall clock
    /// (`CLOCK_REALTIME`, ~25 ns per message) instead of the default coarse one
    /// (`CLOCK_REALTIME_COARSE`: the time of the last timer tick, 1–4 ms resolution, ~4 ns).
    /// The record time is informational (`inspect`, `tail`, [`RawRecord`](crate::RawRecord));
    /// ordering is by sequence number either way.
    pub fn precise_timestamps(mut self, precise: bool) -> Self {
        self.precise_timestamps = precise;
        self
    }

    pub(crate) fn meta_config<T: Message>(&self) -> Result<MetaConfig> {
        if self.capacity == 0 {
            return Err(QueueError::InvalidConfig(
                "capacity must be at least 1".into(),
            ));
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(QueueError::InvalidConfig(format!(
                "segment size {} must be a multiple of 4096 between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.index_interval == 0 {
            return Err(QueueError::InvalidConfig(
                "index interval must be at least 1".into(),
            ));
        }
        let (_, data_start) =
            crate::journal::format::segment_geometry(self.segment_size, self.index_interval);
        let fits = self.segment_size - data_start as u64 - RECORD_HEADER as u64;
        let max_payload = u64::from(self.max_message_size).min(fits) as u32;
        let lease_ms = u32::try_from(self.lease_timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(MetaConfig {
            type_name: T::NAME.to_owned(),
            fingerprint: T::FINGERPRINT,
            segment_size: self.segment_size,
            capacity: self.capacity,
            index_interval: self.index_interval,
            max_payload,
            lease_ms,
            created_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        })
    }

    /// Creates the queue at `path`, or opens it if it exists (then its stored settings win).
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] for bad settings; [`QueueError::TypeMismatch`] if an
    /// existing queue holds another type; [`QueueError::Corrupt`] for damaged files;
    /// [`QueueError::Io`].
    pub fn create<T: Message>(self, path: impl AsRef<Path>) -> Result<JournalQueue<T>> {
        let config = self.meta_config::<T>()?;
        let schema = crate::descriptor::Schema::of::<T>().to_json_string();
        let (journal, created) = Journal::create_or_open_described(
            path.as_ref(),
            &config,
            self.prefault,
            crate::journal::InitialPolicy::Inherit,
            Some(&schema),
        )?;
        if !created && self.require_capacity && journal.config().capacity != self.capacity {
            return Err(QueueError::InvalidConfig(format!(
                "the queue at {} exists with a capacity of {} messages, not the {} asked for: \
                 the capacity is fixed when a queue is created (open it to keep its settings, or \
                 create it anew elsewhere)",
                path.as_ref().display(),
                journal.config().capacity,
                self.capacity
            )));
        }
        if created {
            // A new queue is about to be written: prepare the first segment's file (allocated,
            // zeroed, mapped writable) in the background now rather than on the first enqueue.
            journal.prepare_spare();
        }
        let queue = JournalQueue::from_journal(journal, self)?;
        // After the type check: the schema describes the type the meta file names (a queue
        // created before schema files existed gets one now).
        crate::journal::schema_file::publish(path.as_ref(), &schema)?;
        Ok(queue)
    }

    /// Opens the queue at `path`, waiting up to `timeout` for another process to create it (a
    /// consumer started before its producer): polls for it every 10 ms, sleeping the thread in
    /// between (the async handle's [`open_wait`](crate::ReplicatedQueueImpl::open_wait) does
    /// this on a thread of its own).
    ///
    /// # Errors
    ///
    /// The "no queue at DIR yet" [`QueueError::Io`] (kind `NotFound`) if none appeared within
    /// `timeout`; otherwise as [`QueueOptions::open`].
    pub fn open_wait<T: Message>(
        self,
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<JournalQueue<T>> {
        let path = path.as_ref();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.clone().open::<T>(path) {
                Err(QueueError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    /// Opens the existing queue at `path`.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::create`]; [`QueueError::Io`] of kind `NotFound`, saying "no queue at
    /// DIR yet", if there is no queue ([`QueueOptions::open_wait`] waits for one).
    pub fn open<T: Message>(self, path: impl AsRef<Path>) -> Result<JournalQueue<T>> {
        let journal = Journal::open(path.as_ref(), self.prefault)?;
        let queue = JournalQueue::from_journal(journal, self)?;
        // A queue created before schema files existed gets one from its first typed handle;
        // best effort (the directory may be read-only for this user).
        let _ = crate::journal::schema_file::publish(
            path.as_ref(),
            &crate::descriptor::Schema::of::<T>().to_json_string(),
        );
        Ok(queue)
    }
}

pub(crate) fn check_type<T: Message>(journal: &Journal) -> Result<()> {
    let config = journal.config();
    if config.fingerprint != T::FINGERPRINT || config.type_name != T::NAME {
        return Err(QueueError::TypeMismatch {
            path: journal.dir.clone(),
            expected_name: T::NAME.to_owned(),
            expected_fingerprint: T::FINGERPRINT,
            found_name: config.type_name.clone(),
            found_fingerprint: config.fingerprint,
        });
    }
    Ok(())
}
