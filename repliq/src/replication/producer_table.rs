//! The idempotent producers' table of one queue as a file, and how it travels to replicas.
//!
//! `repliqd`'s append thread (the queue's single writer of remote batches) keeps the table in
//! `producers.json` in the queue directory. Before it appends a batch it replaces the file with
//! the batch recorded as `pending`; after the append the batch moves (in memory, in the next
//! write) into `history`, a bounded list of the last batches, each with the producer's state
//! *before* it:
//!
//! ```json
//! {"version": 2,
//!  "producers": {"web-1": {"epoch": 2, "next_seq": 1200, "last_queue_seq": 98311}},
//!  "history": [{"producer": "web-1", "epoch": 2, "first_seq": 1100, "journal_from": 98200,
//!               "crcs": [...], "before": {"epoch": 2, "next_seq": 1100, "last_queue_seq": 98101}}],
//!  "pending": {"producer": "web-1", "epoch": 2, "first_seq": 1200, "journal_from": 98312,
//!              "crcs": [3735928559, 195948557],
//!              "before": {"epoch": 2, "next_seq": 1200, "last_queue_seq": 98311}}}
//! ```
//!
//! `producers` holds the state after every batch of `history` (not after `pending`). Every
//! record the table claims at or after [`TableFile::valid_from`] (the first batch of `history`,
//! else `pending`) belongs to a batch it lists, so the table can be **resolved against any
//! journal that holds at least everything before `valid_from`**: each listed batch is matched
//! in order against the journal from its `journal_from` by the records' checksums, and a batch
//! the journal holds only in part (or not at all) puts its producer back to what it held. That
//! one rule serves three cases:
//!
//! * the primary's daemon was killed while a batch was pending (the batch's records written or
//!   not: the journal decides);
//! * a replica is promoted: it resolves the newest table its primary shipped against its own
//!   journal, which may end anywhere after `valid_from` ([`install_on_promotion`]);
//! * an old primary rejoins as a replica and its records after the new epoch's start are moved
//!   aside ([`roll_back_to`]).
//!
//! **Shipping** (docs/REPLICATION.md, "Producers' table"): the primary's replication task reads
//! `producers.json` before it sends frames and attaches it, when it changed, to the first frame
//! (`Frame.producers`). Because the append thread writes the file before it appends, the table
//! read then lists every batch whose records the frames carry. A replica stores a shipped table
//! as `producers.replica.json` only once it holds every record before the table's
//! `valid_from` ([`ShippedTables`]), under the replication lock, before it acknowledges the
//! frames: its stored table never claims a record it does not hold. Promotion (under the same
//! lock, exclusively) resolves that table and installs it as the new primary's
//! `producers.json`.
//!
//! Version 1 files (no `history`, no `before`) are read as they are; a version 1 reader (an
//! older `repliqd`) reads a version 2 file correctly too (it ignores `history`: `producers`
//! already includes those batches).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The table the queue's primary writes, inside the queue directory.
pub const PRODUCERS_FILE: &str = "producers.json";

/// The newest table a replica received from its primary and may use: installed as
/// [`PRODUCERS_FILE`] when the replica is promoted.
pub const REPLICA_PRODUCERS_FILE: &str = "producers.replica.json";

/// The format version written.
pub const VERSION: u32 = 2;

/// A shipped table larger than this is not stored (a replica keeps its previous one).
pub const MAX_SHIPPED_BYTES: usize = 16 << 20;

/// The history keeps at most this many batches...
const HISTORY_BATCHES: usize = 32;
/// ... and at most this many record checksums in all (the pending batch not counted).
const HISTORY_RECORDS: usize = 2048;

/// What the table knows of one producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// The newest epoch of the id that wrote.
    pub epoch: u64,
    /// The next producer sequence expected in that epoch.
    pub next_seq: u64,
    /// The queue sequence of its last record written (for a synchronous queue's duplicate:
    /// the node waits for its acknowledgement again).
    pub last_queue_seq: Option<u64>,
}

/// One batch of one producer: recorded before it is appended (`pending`), kept after
/// (`history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The producer id.
    pub producer: String,
    /// Its epoch.
    pub epoch: u64,
    /// The producer sequence of the batch's first record written here.
    pub first_seq: u64,
    /// The journal's next sequence number before the append.
    pub journal_from: u64,
    /// crc32c of each record's bytes, in order.
    pub crcs: Vec<u32>,
    /// The producer's state before the batch (`None`: it had none). Absent in version 1
    /// files, where only `pending` exists and `producers` holds this.
    #[serde(default)]
    pub before: Option<ProducerState>,
}

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// The format version (1 or 2).
    pub version: u32,
    /// Each producer's state after every batch of `history` (not after `pending`).
    pub producers: BTreeMap<String, ProducerState>,
    /// The last batches appended, oldest first (version 2).
    #[serde(default)]
    pub history: Vec<Pending>,
    /// The batch being appended when the file was written.
    #[serde(default)]
    pub pending: Option<Pending>,
}

/// A table file that cannot be used: each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerTableError {
    /// Reading, writing or renaming failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a table (torn, truncated, not JSON, inconsistent).
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A table of a format this build does not read.
    #[error("{} has format version {version}; this build reads versions 1 and 2", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it names.
        version: u32,
    },
}

impl From<ProducerTableError> for crate::QueueError {
    fn from(e: ProducerTableError) -> Self {
        match e {
            ProducerTableError::Io { op, path, source } => {
                crate::QueueError::io(format!("{op} {}", path.display()), source)
            }
            other => crate::QueueError::Other(other.to_string()),
        }
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> ProducerTableError {
    ProducerTableError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What resolving a table against a journal found for one batch that was not wholly there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritten {
    /// The batch's producer.
    pub producer: String,
    /// Its first producer sequence.
    pub first_seq: u64,
    /// Its records.
    pub records: u64,
    /// How many of them the journal holds (a prefix).
    pub written: u64,
}

impl TableFile {
    /// Decodes and checks the bytes of the table at `path` (named in errors).
    ///
    /// # Errors
    ///
    /// [`ProducerTableError::Damaged`] (not JSON, torn, batches out of order, a batch without
    /// records), [`ProducerTableError::UnsupportedVersion`].
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<TableFile, ProducerTableError> {
        let damaged = |reason: String| ProducerTableError::Damaged {
            path: path.to_owned(),
            reason,
        };
        let mut table: TableFile =
            serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if !(1..=VERSION).contains(&table.version) {
            return Err(ProducerTableError::UnsupportedVersion {
                path: path.to_owned(),
                version: table.version,
            });
        }
        let mut from = None;
        for b in table.history.iter().chain(&table.pending) {
            if b.crcs.is_empty() {
                return Err(damaged(format!(
                    "the batch of {:?} at {} has no records",
                    b.producer, b.first_seq
                )));
            }
            if from.is_some_and(|f| b.journal_from <= f) {
                return Err(damaged(format!(
                    "the batch of {:?} at journal position {} is not after the one before it",
                    b.producer, b.journal_from
                )));
            }
            from = Some(b.journal_from);
        }
        if table.version == 1
            && let Some(p) = table.pending.as_mut()
        {
            // Version 1 has no `before`: the pending batch's producer state is `producers`'.
            p.before = table.producers.get(&p.producer).copied();
        }
        Ok(table)
    }

    /// Reads the table at `path`; `None` if there is no file.
    ///
    /// # Errors
    ///
    /// As [`TableFile::parse`]; [`ProducerTableError::Io`].
    pub fn read(path: &Path) -> Result<Option<TableFile>, ProducerTableError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", path, e)),
        }
    }

    /// The first journal position whose records the table may claim without listing their
    /// batch: a journal that holds every record before it can resolve the table. The first
    /// listed batch's `journal_from`; without any, one past the newest record a producer wrote.
    pub fn valid_from(&self) -> u64 {
        match self.history.first().or(self.pending.as_ref()) {
            Some(b) => b.journal_from,
            None => self
                .producers
                .values()
                .filter_map(|s| s.last_queue_seq)
                .max()
                .map_or(0, |s| s.saturating_add(1)),
        }
    }

    /// The table as the journal of the queue in `dir` has it: each listed batch matched in
    /// order from its `journal_from` (a prefix of it; once one is short, later ones count as
    /// absent), and each producer whose batch is short put back to what it held. The result
    /// lists no pending batch and keeps the wholly written batches (a part-written one cut to
    /// what was written) as history. Returns the batches that were not wholly there.
    ///
    /// A journal that cannot be read at a batch's position (retention removed it) counts as
    /// not holding the batch: a retry may then write it again (a duplicate, never a loss).
    pub fn resolve(&self, dir: &Path) -> (TableFile, Vec<Unwritten>) {
        let mut producers = self.producers.clone();
        let mut history = Vec::new();
        let mut short = Vec::new();
        let mut cut = false;
        let batches: Vec<&Pending> = self.history.iter().chain(&self.pending).collect();
        let mut outcomes = Vec::with_capacity(batches.len());
        for b in &batches {
            let (written, last) = if cut { (0, None) } else { matched(dir, b) };
            let count = b.crcs.len() as u64;
            if written < count {
                cut = true;
                short.push(Unwritten {
                    producer: b.producer.clone(),
                    first_seq: b.first_seq,
                    records: count,
                    written,
                });
            }
            if written > 0 {
                let mut kept = (*b).clone();
                kept.crcs
                    .truncate(usize::try_from(written).unwrap_or(usize::MAX));
                history.push(kept);
            }
            outcomes.push((written, last));
        }
        // The pending batch moves its producer forward by what was written of it.
        if let (Some(p), Some(&(written, last))) = (&self.pending, outcomes.last())
            && written > 0
        {
            producers.insert(
                p.producer.clone(),
                ProducerState {
                    epoch: p.epoch,
                    next_seq: p.first_seq + written,
                    last_queue_seq: last,
                },
            );
        }
        // A short batch puts its producer back, the oldest short batch last (it decides).
        for (b, &(written, last)) in batches.iter().zip(&outcomes).rev() {
            if written == b.crcs.len() as u64 {
                continue;
            }
            let state = if written > 0 {
                Some(ProducerState {
                    epoch: b.epoch,
                    next_seq: b.first_seq + written,
                    last_queue_seq: last,
                })
            } else {
                b.before
            };
            match state {
                Some(s) => {
                    producers.insert(b.producer.clone(), s);
                }
                None => {
                    producers.remove(&b.producer);
                }
            }
        }
        let table = TableFile {
            version: VERSION,
            producers,
            history,
            pending: None,
        };
        (table, short)
    }

    /// Adds a batch that was appended (after [`TableFile::pending`] named it) to the history,
    /// dropping the oldest batches beyond the bound, and sets its producer's state.
    pub fn appended(&mut self, batch: Pending, state: ProducerState) {
        self.producers.insert(batch.producer.clone(), state);
        self.history.push(batch);
        let mut records: usize = self.history.iter().map(|b| b.crcs.len()).sum();
        while self.history.len() > HISTORY_BATCHES
            || (records > HISTORY_RECORDS && self.history.len() > 1)
        {
            records -= self.history.remove(0).crcs.len();
        }
    }

    /// The file's bytes.
    ///
    /// # Errors
    ///
    /// [`ProducerTableError::Damaged`] if it cannot be encoded (it always can).
    pub fn encode(&self, path: &Path) -> Result<Vec<u8>, ProducerTableError> {
        serde_json::to_vec(self).map_err(|e| ProducerTableError::Damaged {
            path: path.to_owned(),
            reason: format!("encoding: {e}"),
        })
    }

    /// Replaces the file at `path` atomically: a temporary file beside it, fsync, rename, fsync
    /// of the directory.
    ///
    /// # Errors
    ///
    /// [`ProducerTableError::Io`] naming the file.
    pub fn store(&self, path: &Path) -> Result<(), ProducerTableError> {
        let bytes = self.encode(path)?;
        store_bytes(path, &bytes)
    }
}

/// How many of `batch`'s records (a prefix, in order) the journal of `dir` holds from its
/// `journal_from` on, and the queue sequence of the last one.
fn matched(dir: &Path, batch: &Pending) -> (u64, Option<u64>) {
    let Ok(mut tailer) = crate::RawTailer::open(dir, Some(batch.journal_from)) else {
        return (0, None);
    };
    let mut count = 0usize;
    let mut last = None;
    while count < batch.crcs.len() {
        let Ok(Some(record)) = tailer.try_next() else {
            break;
        };
        if crc32c::crc32c(&record.payload) == batch.crcs[count] {
            count += 1;
            last = Some(record.seq);
        }
    }
    (count as u64, last)
}

/// Writes `bytes` as the file at `path`, atomically.
fn store_bytes(path: &Path, bytes: &[u8]) -> Result<(), ProducerTableError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ProducerTableError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing", dir, e))
}

/// What [`roll_back_to`] did with a table.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollBack {
    /// There was no table.
    Absent,
    /// The table now describes the journal up to the given tail (batches after it put back).
    Resolved(Vec<Unwritten>),
    /// The table could not describe the journal (it claims records before the tail it cannot
    /// put back, or it is damaged) and was moved to the path given: the queue has no table.
    MovedAside {
        /// Where it is now.
        to: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Makes the table `file` of the queue in `dir` describe the journal as it is now, whose next
/// record is `tail`: after a move-aside cut the journal back (an old primary rejoining as a
/// replica), or at a promotion. A table that claims records before `tail` it cannot put back
/// (its `valid_from` is past `tail`) or that is damaged is moved aside into
/// `dir/moved-aside/` instead: no table is safe (a retry may write a record twice), a table
/// claiming records the journal lacks is not (a retry would be acknowledged and not written).
///
/// # Errors
///
/// [`ProducerTableError::Io`] naming the file.
pub fn roll_back_to(dir: &Path, file: &str, tail: u64) -> Result<RollBack, ProducerTableError> {
    let path = dir.join(file);
    let reason = match TableFile::read(&path) {
        Ok(None) => return Ok(RollBack::Absent),
        Ok(Some(table)) if table.valid_from() <= tail => {
            let (resolved, short) = table.resolve(dir);
            if resolved != table {
                resolved.store(&path)?;
            }
            return Ok(RollBack::Resolved(short));
        }
        Ok(Some(table)) => format!(
            "it describes records up to {} and the journal ends at {tail}",
            table.valid_from()
        ),
        Err(ProducerTableError::Io { op, path, source }) => {
            return Err(ProducerTableError::Io { op, path, source });
        }
        Err(e) => e.to_string(),
    };
    let aside = dir.join("moved-aside");
    std::fs::create_dir_all(&aside).map_err(|e| io("creating", &aside, e))?;
    let to = aside.join(format!("{file}.at-{tail}"));
    std::fs::rename(&path, &to).map_err(|e| io("moving aside", &path, e))?;
    sync_dir(dir)?;
    Ok(RollBack::MovedAside { to, reason })
}

/// At a promotion (under the exclusive replication lock, the journal's next record `tail`):
/// the table the replica received from its primary, resolved against this journal, becomes the
/// queue's `producers.json`. Without one, the queue's own `producers.json` (from an earlier term
/// of this node, if any) is resolved the same way.
///
/// # Errors
///
/// [`ProducerTableError::Io`] naming the file.
pub fn install_on_promotion(dir: &Path, tail: u64) -> Result<RollBack, ProducerTableError> {
    let shipped = dir.join(REPLICA_PRODUCERS_FILE);
    if !shipped.exists() {
        return roll_back_to(dir, PRODUCERS_FILE, tail);
    }
    let outcome = roll_back_to(dir, REPLICA_PRODUCERS_FILE, tail)?;
    if matches!(outcome, RollBack::Resolved(_)) {
        let own = dir.join(PRODUCERS_FILE);
        std::fs::rename(&shipped, &own).map_err(|e| io("installing", &own, e))?;
        sync_dir(dir)?;
    }
    Ok(outcome)
}

/// The tables a replica received and cannot store yet: each waits until the replica holds
/// every record before its `valid_from`. Arrival order is kept; the newest ready one wins.
#[derive(Debug, Default)]
pub struct ShippedTables {
    waiting: VecDeque<TableFile>,
}

/// Tables waiting at most (a replica far behind drops the oldest: it stores a newer one later).
const WAITING_TABLES: usize = 8;

impl ShippedTables {
    /// Decodes a table shipped with a frame (named as `path` in errors).
    ///
    /// # Errors
    ///
    /// As [`TableFile::parse`]; [`ProducerTableError::Damaged`] for a table over
    /// [`MAX_SHIPPED_BYTES`].
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<TableFile, ProducerTableError> {
        if bytes.len() > MAX_SHIPPED_BYTES {
            return Err(ProducerTableError::Damaged {
                path: path.to_owned(),
                reason: format!(
                    "a shipped table of {} bytes is over the limit of {MAX_SHIPPED_BYTES}",
                    bytes.len()
                ),
            });
        }
        TableFile::parse(path, bytes)
    }

    /// A table arrived.
    pub fn offer(&mut self, table: TableFile) {
        if self.waiting.len() >= WAITING_TABLES {
            self.waiting.pop_front();
        }
        self.waiting.push_back(table);
    }

    /// The newest table the replica may store now that it holds every record before `tail`
    /// (it and every older one leave the queue).
    pub fn take_ready(&mut self, tail: u64) -> Option<TableFile> {
        let i = self.waiting.iter().rposition(|t| t.valid_from() <= tail)?;
        let mut ready = self.waiting.drain(..=i);
        ready.next_back()
    }

    /// Tables of a stream that ended or of an older primary: dropped.
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// crc32c of each record.
pub fn checksums<B: AsRef<[u8]>>(records: &[B]) -> Vec<u32> {
    records.iter().map(|r| crc32c::crc32c(r.as_ref())).collect()
}

#[cfg(test)]
mod tests;
