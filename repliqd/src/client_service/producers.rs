//! The idempotent producers' table of one queue: the last producer sequence written for the
//! newest epoch of each producer id, kept in `producers.json` inside the queue directory.
//!
//! ```json
//! {"version": 1,
//!  "producers": {"web-1": {"epoch": 2, "next_seq": 1200, "last_queue_seq": 98311}},
//!  "pending": {"producer": "web-1", "epoch": 2, "first_seq": 1200, "journal_from": 98312,
//!              "crcs": [3735928559, 195948557]}}
//! ```
//!
//! Only the queue's append thread (`appender`) reads and writes it. Before it appends a
//! batch it replaces the file (temporary file, fsync, rename, fsync of the directory) with the
//! batch recorded as `pending`: the producer, its first producer sequence, the journal's next
//! sequence before the append and the crc32c of each record. After the append only memory
//! changes (the next write carries it). A daemon killed at any point leaves a file that says
//! either nothing about the batch (killed before the write: the batch was not appended) or that
//! it is pending; on load a pending batch is resolved by reading the journal from
//! `journal_from` and matching the records' checksums in order, so the table says exactly how
//! many of the batch's records were written (the crash window of a "write the table after the
//! append" scheme is closed). The match is by checksum: a record another producer wrote in the
//! same instant with byte-identical content could be taken for the batch's (documented in
//! `docs/CLIENTS.md`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name inside the queue directory.
pub const PRODUCERS_FILE: &str = "producers.json";

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

/// A batch about to be appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub producer: String,
    pub epoch: u64,
    pub first_seq: u64,
    /// The journal's next sequence number before the append.
    pub journal_from: u64,
    /// crc32c of each record's bytes, in order.
    pub crcs: Vec<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    producers: BTreeMap<String, ProducerState>,
    #[serde(default)]
    pending: Option<Pending>,
}

/// The table of one queue.
#[derive(Debug)]
pub struct ProducerTable {
    dir: PathBuf,
    producers: BTreeMap<String, ProducerState>,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

impl ProducerTable {
    /// Loads the table of the queue in `dir` (empty if it has none) and resolves a batch that
    /// was pending when the daemon stopped against the journal.
    pub fn load(dir: &Path) -> Result<ProducerTable, String> {
        let path = dir.join(PRODUCERS_FILE);
        let file: File = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(io(&path, "reading", e)),
        };
        let mut table = ProducerTable {
            dir: dir.to_owned(),
            producers: file.producers,
        };
        if let Some(pending) = file.pending {
            let (written, last_queue_seq) = resolve(dir, &pending);
            tracing::info!(
                queue = %dir.display(),
                producer = %pending.producer,
                first_seq = pending.first_seq,
                records = pending.crcs.len(),
                written,
                "resolved the batch that was being appended when the daemon stopped"
            );
            if written > 0 {
                table.producers.insert(
                    pending.producer.clone(),
                    ProducerState {
                        epoch: pending.epoch,
                        next_seq: pending.first_seq + written,
                        last_queue_seq,
                    },
                );
            }
            table.store(None)?;
        }
        Ok(table)
    }

    /// The state of `producer`, if it ever wrote.
    pub fn get(&self, producer: &str) -> Option<ProducerState> {
        self.producers.get(producer).copied()
    }

    /// Records in memory that `producer` wrote up to `next_seq` (exclusive).
    pub fn set(&mut self, producer: &str, state: ProducerState) {
        self.producers.insert(producer.to_owned(), state);
    }

    /// Replaces the file atomically with the table and `pending`.
    pub fn store(&self, pending: Option<&Pending>) -> Result<(), String> {
        let path = self.dir.join(PRODUCERS_FILE);
        let tmp = self.dir.join(format!(".tmp-{PRODUCERS_FILE}"));
        let json = serde_json::to_vec(&FileRef {
            version: 1,
            producers: &self.producers,
            pending,
        })
        .map_err(|e| format!("encoding {}: {e}", path.display()))?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, "creating", e))?;
            f.write_all(&json).map_err(|e| io(&tmp, "writing", e))?;
            f.sync_all().map_err(|e| io(&tmp, "syncing", e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, "replacing", e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, "syncing", e))
    }
}

#[derive(Serialize)]
struct FileRef<'a> {
    version: u32,
    producers: &'a BTreeMap<String, ProducerState>,
    pending: Option<&'a Pending>,
}

/// How many of the pending batch's records (a prefix, in order) the journal holds from
/// `journal_from` on, and the queue sequence of the last one. A journal that cannot be read
/// there (retention removed it) counts as none written: a retry may then write the batch again
/// (a duplicate, never a loss).
fn resolve(dir: &Path, pending: &Pending) -> (u64, Option<u64>) {
    let Ok(mut tailer) = repliq::RawTailer::open(dir, Some(pending.journal_from)) else {
        return (0, None);
    };
    let mut matched = 0usize;
    let mut last = None;
    while matched < pending.crcs.len() {
        let Ok(Some(record)) = tailer.try_next() else {
            break;
        };
        if crc32c::crc32c(&record.payload) == pending.crcs[matched] {
            matched += 1;
            last = Some(record.seq);
        }
    }
    (matched as u64, last)
}

/// crc32c of each record.
pub fn checksums(records: &[bytes::Bytes]) -> Vec<u32> {
    records.iter().map(|r| crc32c::crc32c(r)).collect()
}
