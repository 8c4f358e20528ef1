//! Carrying out the leader's actions: frames read from the journal and sent on each replica's
//! stream, acknowledgements published in the meta file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ReplicaLink;
use super::producers::TableSource;
use crate::journal::replica::ByteSource;
use crate::journal::{Journal, notify};
use crate::replication::grpc::proto::{Frame, PrimaryMessage, Resync, primary_message};
use crate::replication::state::ReplicationState;
use crate::replication::{Leader, LeaderAction, PrimaryOptions};
use crate::{QueueError, Result};

/// How long the primary waits for room in a replica's stream before it gives the stream up
/// (the replica is stopped or far slower than the others): one slow replica must not stall
/// acknowledgements from the others or the metrics.
pub(super) const SEND_STALL: Duration = Duration::from_secs(1);

pub(super) async fn execute(
    journal: &Arc<Journal>,
    queue: &str,
    leader: &mut Leader,
    links: &mut BTreeMap<String, ReplicaLink>,
    tables: &mut TableSource,
    actions: Vec<LeaderAction>,
    options: &PrimaryOptions,
) -> Result<()> {
    for action in actions {
        match action {
            LeaderAction::Send { node, from, to } => {
                let Some(link) = links.get_mut(&node) else {
                    continue;
                };
                let mut frames = Vec::new();
                let source = match &mut link.source {
                    Some(s) if s.next_seq() == from => s,
                    slot => match open_source(journal, from, link.resync) {
                        Ok(source) => slot.insert(source),
                        Err(e) => {
                            // This replica cannot be served (e.g. it needs records retention
                            // deleted); the others can. Drop its stream; it will retry.
                            tracing::error!(queue = %queue, replica = %node, error = %e, "cannot serve replica");
                            links.remove(&node);
                            leader.disconnected(&node);
                            continue;
                        }
                    },
                };
                if from == to {
                    frames.push(empty_frame(leader, from));
                }
                while source.next_seq() < to {
                    let Some(raw) = source.read(options.max_frame_bytes, to - source.next_seq())?
                    else {
                        break;
                    };
                    if let Some(m) = &options.observer {
                        m.sent_bytes(queue, &node, raw.bytes.len() as u64);
                    }
                    let first_seq = raw.records.first().map_or(source.next_seq(), |r| r.seq);
                    if let Some(last) = raw.records.last() {
                        link.inflight.push_back((last.seq, Instant::now()));
                    }
                    if let Some(at) = link.resync.take() {
                        frames.push(PrimaryMessage {
                            kind: Some(primary_message::Kind::Resync(Resync {
                                segment_first_seq: at,
                            })),
                        });
                    }
                    frames.push(PrimaryMessage {
                        kind: Some(primary_message::Kind::Frame(Frame {
                            epoch: leader.config().epoch,
                            epoch_start: leader.config().epoch_start,
                            segment_first_seq: raw.segment_first_seq,
                            offset: raw.offset as u64,
                            first_seq,
                            record_count: raw.records.len() as u32,
                            // The mapping itself, not a copy (an abandoned extent's frame is a
                            // copy with zeros: `FrameBytes`).
                            bytes: Bytes::from_owner(raw.bytes),
                            producers: None,
                            consumer_cursors: Vec::new(),
                        })),
                    });
                }
                let sent_to = source.next_seq();
                if let Some(newer) = newer_epoch(journal, leader.config().epoch) {
                    return Err(QueueError::protocol(format!(
                        "{}: this node began epoch {newer}; the stream of epoch {} ends without \
                         sending its records",
                        journal.dir.display(),
                        leader.config().epoch
                    )));
                }
                // The producers' table, read now that the frames' records are committed, goes
                // with the first frame when this stream has not had this version yet.
                if let Some((version, table)) = tables.current()
                    && link.table_sent != Some(version)
                    && let Some(frame) = frames.iter_mut().find_map(|m| match &mut m.kind {
                        Some(primary_message::Kind::Frame(f)) => Some(f),
                        _ => None,
                    })
                {
                    frame.producers = Some(table);
                    link.table_sent = Some(version);
                }
                // The consumer cursors go with the last frame (the replica applies them once it
                // holds the records before `sent_to`) when this stream has not sent them yet.
                if let Some(frame) = frames.iter_mut().rev().find_map(|m| match &mut m.kind {
                    Some(primary_message::Kind::Frame(f)) => Some(f),
                    _ => None,
                }) && let Some(cursors) = link.cursors_sent.changed(&journal.meta, sent_to)
                {
                    frame.consumer_cursors = cursors;
                }
                for f in frames {
                    match tokio::time::timeout(SEND_STALL, link.tx.send(f)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            leader.disconnected(&node);
                            break;
                        }
                        Err(_) => {
                            // Dropping the link's sender ends the stream (the connection task
                            // holds none): the replica resubscribes when it is back.
                            tracing::warn!(queue = %queue, replica = %node, "replica stream stalled; dropping it");
                            links.remove(&node);
                            leader.disconnected(&node);
                            break;
                        }
                    }
                }
            }
            LeaderAction::Acked { next_seq } => publish_acked(journal, queue, next_seq, options),
            LeaderAction::StepDown { epoch } => {
                // Become a replica of the newer primary. The epoch stays the one this node has
                // data of: the new primary's first frame then moves aside whatever this node
                // wrote after the new epoch began.
                // Under the state lock, as every fence: a newer primary's stream that the replica
                // service admits meanwhile is not overwritten with this node's old state.
                ReplicationState::demote(&journal.dir)?;
                return Err(QueueError::protocol(format!(
                    "{}: a replica has seen epoch {epoch}; this node is no longer the primary",
                    journal.dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// The queue's epoch on this node if it is newer than `stream_epoch`: the node was fenced and
/// promoted again (an election's new term) while this stream of the older term still drains.
/// Its records from the new term's start on belong to the new term's streams: sent here, a
/// replica would take them as the older epoch's, move them aside when the new term's Hello
/// arrives and take them again, and a consumer there would read them twice (found by the fault
/// schedules, docs/CHECKER.md, schedule 489). Read after the frame's records: a record written
/// in the new term was appended by a producer that had seen the new epoch word, so the word is
/// visible here once the record is.
pub(super) fn newer_epoch(journal: &Journal, stream_epoch: u64) -> Option<u64> {
    let now = journal
        .epoch_word()
        .load(std::sync::atomic::Ordering::Acquire);
    (now > stream_epoch).then_some(now)
}

/// Publishes the acknowledged sequence where synchronous producers wait for it, if this node
/// may acknowledge: while the lease that made it primary holds ([`Authority`](super::Authority)).
/// A primary paused through a failover (its lease ran out) may still get acknowledgements its
/// replicas sent before they learned of the next epoch: they are withheld, and published later
/// only if the lease holds again (the loop retries with [`Leader::acked`]).
pub(super) fn publish_acked(
    journal: &Journal,
    queue: &str,
    next_seq: u64,
    options: &PrimaryOptions,
) {
    let meta = &journal.meta;
    if meta.acked().load(Ordering::Acquire) >= next_seq {
        return;
    }
    if options.authority.as_ref().is_some_and(|a| !a.holds()) {
        tracing::debug!(queue = %queue, next_seq, "lease not held: acknowledgement withheld");
        return;
    }
    meta.acked().fetch_max(next_seq, Ordering::SeqCst);
    notify::wake(meta.ack_notify(), meta.ack_waiters());
}

/// The source of frames from `from` on: at the data start of segment `from` for a due resync
/// from there, else right after record `from - 1`.
pub(super) fn open_source(
    journal: &Arc<Journal>,
    from: u64,
    resync: Option<u64>,
) -> Result<ByteSource> {
    if resync == Some(from) {
        ByteSource::at_segment_start(journal.clone(), from)
    } else {
        ByteSource::at(journal.clone(), from)
    }
}

pub(super) fn empty_frame(leader: &Leader, at: u64) -> PrimaryMessage {
    PrimaryMessage {
        kind: Some(primary_message::Kind::Frame(Frame {
            epoch: leader.config().epoch,
            epoch_start: leader.config().epoch_start,
            segment_first_seq: 0,
            offset: 0,
            first_seq: at,
            record_count: 0,
            bytes: Bytes::new(),
            producers: None,
            consumer_cursors: Vec::new(),
        })),
    }
}

#[cfg(test)]
mod test {
    use super::newer_epoch;
    use crate::journal::Journal;
    use crate::replication::ReplicationState;

    /// A stream of epoch 1 sees that its node began epoch 2 (fenced, then promoted again by the
    /// election) once the new term is stored, and not before: it then ends instead of sending the
    /// new term's records as its own.
    #[test]
    fn a_stream_of_an_older_term_sees_its_node_begin_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        drop(
            crate::QueueOptions::new()
                .create::<crate::dead_letter::DeadLetter>(&path)
                .unwrap(),
        );
        let journal = Journal::open(&path, false).unwrap();
        assert_eq!(newer_epoch(&journal, 1), None);
        ReplicationState::demote(&path).unwrap();
        assert_eq!(newer_epoch(&journal, 1), None, "fenced, not yet promoted");
        ReplicationState::promote_to_epoch(&path, 2).unwrap();
        assert_eq!(newer_epoch(&journal, 1), Some(2));
        assert_eq!(
            newer_epoch(&journal, 2),
            None,
            "the new term's own stream goes on"
        );
    }
}
