//! One thread per queue appends every remote producer's batches (so the producers' table has a
//! single writer) and answers the producers' stream tasks through one-shot channels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use repliq::{QueueError, RawQueue, ReplicationError};
use tokio::sync::oneshot;

use super::producers::{Pending, ProducerState, ProducerTable, checksums};
use super::refusal::Refusal;

/// A stream's request to the queue's thread.
pub enum Job {
    /// A producer opens: check the type and the epoch, answer the next expected sequence.
    Open {
        producer: String,
        epoch: u64,
        message_type: String,
        fingerprint: u64,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    /// A batch numbered from `first_seq`.
    Batch {
        producer: String,
        epoch: u64,
        first_seq: u64,
        records: Vec<bytes::Bytes>,
        reply: oneshot::Sender<Result<Written, Refusal>>,
    },
}

/// What a batch came to.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub duplicates: u32,
    pub queue_seqs: Option<(u64, u64)>,
}

/// The queues' threads, started on first use.
#[derive(Debug, Clone, Default)]
pub struct Appenders {
    queues: Arc<Mutex<HashMap<PathBuf, std::sync::mpsc::Sender<Job>>>>,
}

impl Appenders {
    /// Hands `job` to the thread of the queue in `dir` (starting it if needed).
    pub fn submit(&self, dir: &Path, job: Job) -> Result<(), Refusal> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let job = match queues.get(dir) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The thread ended (it could not start): start a new one.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = dir.to_owned();
        std::thread::Builder::new()
            .name("repliqd-append".into())
            .spawn(move || run(&owned, &rx))
            .map_err(|e| Refusal::internal(format!("starting the append thread: {e}")))?;
        tx.send(job)
            .map_err(|_| Refusal::internal("the append thread ended at once"))?;
        queues.insert(dir.to_owned(), tx);
        Ok(())
    }
}

/// The thread: the queue's producer handle and table, opened (again) when needed.
fn run(dir: &Path, jobs: &std::sync::mpsc::Receiver<Job>) {
    let mut state: Option<(RawQueue, ProducerTable)> = None;
    while let Ok(job) = jobs.recv() {
        if state.is_none() {
            match open(dir) {
                Ok(s) => state = Some(s),
                Err(refusal) => {
                    answer_all(job, &refusal);
                    continue;
                }
            }
        }
        let Some((queue, table)) = state.as_mut() else {
            continue;
        };
        let reopen = match job {
            Job::Open {
                producer,
                epoch,
                message_type,
                fingerprint,
                reply,
            } => {
                let r = opened(
                    dir,
                    queue,
                    table,
                    &producer,
                    epoch,
                    &message_type,
                    fingerprint,
                );
                let reopen = r.as_ref().is_err_and(Refusal::is_redirect);
                let _ = reply.send(r);
                reopen
            }
            Job::Batch {
                producer,
                epoch,
                first_seq,
                records,
                reply,
            } => {
                let r = batch(dir, queue, table, &producer, epoch, first_seq, &records);
                let reopen = r
                    .as_ref()
                    .is_err_and(|e| e.is_redirect() || e.is_internal());
                let _ = reply.send(r);
                reopen
            }
        };
        if reopen {
            // Demoted or fenced (or a failed table write): a later job opens afresh.
            state = None;
        }
    }
}

fn answer_all(job: Job, refusal: &Refusal) {
    match job {
        Job::Open { reply, .. } => {
            let _ = reply.send(Err(refusal.clone()));
        }
        Job::Batch { reply, .. } => {
            let _ = reply.send(Err(refusal.clone()));
        }
    }
}

fn open(dir: &Path) -> Result<(RawQueue, ProducerTable), Refusal> {
    if !dir.join("queue.meta").exists() {
        return Err(Refusal::not_found(dir));
    }
    if let Some(redirect) = Refusal::redirect_if_replica(dir) {
        return Err(redirect);
    }
    let queue = RawQueue::producer(dir).map_err(|e| Refusal::from_queue_error(dir, &e))?;
    let table = ProducerTable::load(dir).map_err(|e| Refusal::internal(e.to_string()))?;
    Ok((queue, table))
}

fn opened(
    dir: &Path,
    queue: &RawQueue,
    table: &ProducerTable,
    producer: &str,
    epoch: u64,
    message_type: &str,
    fingerprint: u64,
) -> Result<u64, Refusal> {
    if let Some(redirect) = Refusal::redirect_if_replica(dir) {
        return Err(redirect);
    }
    if queue.fingerprint() != fingerprint || queue.type_name() != message_type {
        return Err(Refusal::wrong_type(
            dir,
            queue.type_name(),
            queue.fingerprint(),
            message_type,
            fingerprint,
        ));
    }
    match table.get(producer) {
        Some(s) if s.epoch > epoch => Err(Refusal::stale_epoch(producer, s.epoch, epoch)),
        Some(s) if s.epoch == epoch => Ok(s.next_seq),
        _ => Ok(0),
    }
}

fn batch(
    dir: &Path,
    queue: &mut RawQueue,
    table: &mut ProducerTable,
    producer: &str,
    epoch: u64,
    first_seq: u64,
    records: &[bytes::Bytes],
) -> Result<Written, Refusal> {
    let count = records.len() as u64;
    if count == 0 {
        return Err(Refusal::bad_request("an empty batch"));
    }
    let known = table.get(producer);
    let (mut next, last_queue_seq) = match known {
        Some(s) if s.epoch > epoch => {
            return Err(Refusal::stale_epoch(producer, s.epoch, epoch));
        }
        Some(s) if s.epoch == epoch => (s.next_seq, s.last_queue_seq),
        // Not known here (a new producer, a new epoch, or one that wrote through another
        // primary before a failover): its first batch sets where the numbering continues.
        _ => (first_seq, None),
    };
    if first_seq > next {
        match known {
            // Known from before this node's term (the table came with the old primary's
            // records): the records in between were acknowledged by an asynchronous primary
            // and lost in the failover. The producer continues, as a producer this node does
            // not know would.
            Some(s) if table.inherited(&s) => {
                tracing::warn!(
                    queue = %dir.display(), producer, expected = next, got = first_seq,
                    "a producer continues after records this node never received (lost in a \
                     failover of an asynchronous queue)"
                );
                next = first_seq;
            }
            _ => return Err(Refusal::gap(producer, next, first_seq)),
        }
    }
    // Records before `next` were written by an earlier try.
    let duplicates = (next - first_seq).min(count);
    if duplicates == count {
        // Acknowledge again, after the replicas hold it on a synchronous queue.
        if let Some(seq) = last_queue_seq {
            queue
                .wait_replicated(seq)
                .map_err(|e| Refusal::from_queue_error(dir, &e))?;
        }
        return Ok(Written {
            duplicates: u32::try_from(duplicates).unwrap_or(u32::MAX),
            queue_seqs: None,
        });
    }
    // A node demoted since the stream opened writes no table (its `producers.json` is rolled
    // back to what its journal holds when it follows the new primary) and appends nothing.
    if let Some(redirect) = Refusal::redirect_if_replica(dir) {
        return Err(redirect);
    }
    let fresh = &records[usize::try_from(duplicates).unwrap_or(usize::MAX)..];
    let slices: Vec<&[u8]> = fresh.iter().map(AsRef::as_ref).collect();
    let journal_from = queue
        .next_seq()
        .map_err(|e| Refusal::from_queue_error(dir, &e))?;
    let pending = Pending {
        producer: producer.to_owned(),
        epoch,
        first_seq: next,
        journal_from,
        crcs: checksums(fresh),
        before: known,
    };
    table
        .store(Some(&pending))
        .map_err(|e| Refusal::internal(e.to_string()))?;
    let result = queue.append_batch(&slices);
    let done = |table: &mut ProducerTable, last: u64| {
        table.appended(
            pending.clone(),
            ProducerState {
                epoch,
                next_seq: first_seq + count,
                last_queue_seq: Some(last),
            },
        );
    };
    match result {
        Ok((first, last)) => {
            done(table, last);
            Ok(Written {
                duplicates: u32::try_from(duplicates).unwrap_or(u32::MAX),
                queue_seqs: Some((first, last)),
            })
        }
        Err(QueueError::Replication(ReplicationError::AckTimeout { seq, .. })) => {
            // Written here, not acknowledged by the replicas: a retry waits again.
            done(table, seq);
            Err(Refusal::ack_timeout(dir, seq))
        }
        Err(QueueError::Deserialization { reason, .. }) => {
            // Nothing was written (all records are validated first).
            let _ = table.store(None);
            Err(Refusal::invalid_record(dir, &reason))
        }
        Err(e) => {
            // Nothing or part of it written: what the journal holds decides, as after a crash.
            let reloaded =
                ProducerTable::load(dir).map_err(|e| Refusal::internal(e.to_string()))?;
            *table = reloaded;
            Err(Refusal::from_queue_error(dir, &e))
        }
    }
}
