//! The idempotent producers' table of one queue, as the queue's append thread keeps it: the
//! file `producers.json` in the queue directory, whose format, resolution against the journal
//! and shipping to replicas live in `repliq::replication::producer_table` (the replication
//! stream carries it; a promoted replica installs it).
//!
//! Only the queue's append thread (`appender`) writes it. Before it appends a batch it
//! replaces the file (temporary file, fsync, rename, fsync of the directory) with the batch
//! recorded as `pending`: the producer, its first producer sequence, the journal's next
//! sequence before the append, the crc32c of each record and the producer's state before it.
//! After the append only memory changes (the batch joins `history`, the next write carries
//! it). A daemon killed at any point leaves a file that says either nothing about the batch
//! (killed before the write: the batch was not appended) or that it is pending; on load the
//! listed batches are resolved by reading the journal and matching the records' checksums in
//! order, so the table says exactly how many of the batch's records were written (the crash
//! window of a "write the table after the append" scheme is closed). The match is by checksum:
//! a record another producer wrote in the same instant with byte-identical content could be
//! taken for the batch's (documented in `docs/CLIENTS.md`).

use std::path::{Path, PathBuf};

pub use repliq::replication::producer_table::{
    PRODUCERS_FILE, Pending, ProducerState, ProducerTableError, TableFile, VERSION, checksums,
};

/// The table of one queue.
#[derive(Debug)]
pub struct ProducerTable {
    path: PathBuf,
    table: TableFile,
    /// The first queue sequence of this node's term as primary (`replication.json`): a
    /// producer whose last record is older continued through another primary, or wrote before
    /// a failover.
    term_start: u64,
}

impl ProducerTable {
    /// Loads the table of the queue in `dir` (empty if it has none) and resolves the batches
    /// it lists (the one that was pending when the daemon stopped, those a promoted replica
    /// received only in part) against the journal.
    ///
    /// # Errors
    ///
    /// A typed error naming the file: damaged, of an unknown version, or unreadable.
    pub fn load(dir: &Path) -> Result<ProducerTable, ProducerTableError> {
        let path = dir.join(PRODUCERS_FILE);
        let term_start = repliq::replication::ReplicationState::load(dir)
            .map(|s| s.epoch_start)
            .unwrap_or(0);
        let Some(file) = TableFile::read(&path)? else {
            return Ok(ProducerTable {
                path,
                table: TableFile {
                    version: VERSION,
                    ..TableFile::default()
                },
                term_start,
            });
        };
        let (resolved, short) = file.resolve(dir);
        for s in &short {
            tracing::info!(
                queue = %dir.display(),
                producer = %s.producer,
                first_seq = s.first_seq,
                records = s.records,
                written = s.written,
                "resolved a batch the journal holds only in part (the daemon stopped while \
                 appending it, or this node was promoted before it received all of it)"
            );
        }
        let table = ProducerTable {
            path,
            table: resolved,
            term_start,
        };
        if table.table != file {
            table.table.store(&table.path)?;
        }
        Ok(table)
    }

    /// The state of `producer`, if it ever wrote.
    pub fn get(&self, producer: &str) -> Option<ProducerState> {
        self.table.producers.get(producer).copied()
    }

    /// Whether `state` was written before this node's term as primary began (its records came
    /// through an earlier primary).
    pub fn inherited(&self, state: &ProducerState) -> bool {
        state.last_queue_seq.is_none_or(|l| l < self.term_start)
    }

    /// Records that `batch` (recorded as pending before) was appended: `producer` is now at
    /// `state`. Only memory changes; the next [`store`](ProducerTable::store) writes it.
    pub fn appended(&mut self, batch: Pending, state: ProducerState) {
        self.table.appended(batch, state);
    }

    /// Replaces the file atomically with the table and `pending`.
    ///
    /// # Errors
    ///
    /// [`ProducerTableError::Io`] naming the file.
    pub fn store(&mut self, pending: Option<&Pending>) -> Result<(), ProducerTableError> {
        self.table.version = VERSION;
        self.table.pending = pending.cloned();
        let stored = self.table.store(&self.path);
        self.table.pending = None;
        stored
    }
}
