//! The primary side of replication over gRPC: [`run_primary`] streams one queue from this node to
//! its replicas. A thin adapter around the I/O-free [`Leader`]: it turns gRPC messages and journal
//! commits into events and carries out the leader's actions with the journal's byte access
//! (`journal::replica`).
//!
//! One file a job: this one runs the loop ([`run_primary`]); `tail_watcher.rs` turns journal
//! commits into events, `send.rs` carries out the leader's actions on the streams, `health.rs`
//! reports lag and replica health, `connect.rs` opens (and re-opens) a stream to each replica.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::consumer_cursors::SentCursors;
use super::grpc::proto::{Hello, PrimaryMessage};
use super::replica_cursors::ReplicaCursors;
use super::state::{ReplicationState, Role, state_lock};
use super::{Leader, LeaderConfig, PrimaryOptions, ReplicationMode};
use crate::journal::Journal;
use crate::journal::replica::ByteSource;
use crate::{QueueError, Result};

mod connect;
mod health;
mod producers;
mod send;
mod tail_watcher;

use connect::connection;
use health::report_health;
use send::{execute, publish_acked};
use tail_watcher::spawn_tail_watcher;

pub(super) enum Event {
    Committed(u64),
    Subscribed {
        name: String,
        epoch: u64,
        next_seq: u64,
        tx: mpsc::Sender<PrimaryMessage>,
    },
    Ack {
        name: String,
        epoch: u64,
        next_seq: u64,
    },
    Disconnected(String),
    /// A connection attempt or stream to the replica failed (before `Disconnected`).
    Failed {
        name: String,
        reason: String,
    },
    /// The tail watcher met a damaged journal (e.g. a segment truncated while mapped) and
    /// stopped: nothing new is replicated from here.
    Damaged(String),
}

/// How often lag, replica health and the quorum are reported even when nothing happens (a
/// stopped replica sends no events).
const REPORT_INTERVAL: Duration = Duration::from_millis(250);

pub(super) struct ReplicaLink {
    tx: mpsc::Sender<PrimaryMessage>,
    source: Option<ByteSource>,
    /// (last sequence of a frame, when it was sent), for the ack latency.
    inflight: VecDeque<(u64, Instant)>,
    acked: u64,
    /// A full resync from this segment is due: the replica needs records retention deleted.
    /// A `Resync` message goes before the first frame sent from there.
    resync: Option<u64>,
    /// The version of the producers' table (`producers::TableSource`) this stream was sent
    /// last.
    table_sent: Option<u64>,
    /// The consumer cursors this stream sent last (`consumer_cursors`).
    cursors_sent: SentCursors,
    /// `replication.stream`: open from the subscription until the link goes (traces).
    _stream: tracing::Span,
    /// `replication.catch_up` or `replication.resync` (a child of the stream) and the sequence
    /// the replica must acknowledge to end it: what was committed when it subscribed.
    catch_up: Option<(tracing::Span, u64)>,
}

/// The health of one configured replica, as reported to the observer.
#[derive(Default)]
pub(super) struct ReplicaHealth {
    up: bool,
    /// The oldest frame in flight is older than the acknowledgement timeout.
    timed_out: bool,
    error: Option<String>,
}

/// Replicates the queue in `dir` from this node until `stop` turns true, then drains (waits up to
/// `drain_timeout` for replicas to catch up). Publishes the k-of-n acknowledged sequence in the
/// queue's meta file, where synchronous producers wait for it.
///
/// # Errors
///
/// If the queue cannot be opened, or a newer primary exists (the queue's state then says it is a
/// replica).
pub async fn run_primary(
    dir: PathBuf,
    options: PrimaryOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let journal = Journal::open(&dir, false)?;
    let queue = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Held from reading the role to storing it: a demotion by a newer primary's stream (the
    // replica service holds this lock while it applies a frame) lands before or after, never in
    // between, where this task would store `Primary` over it.
    let lock = state_lock(&dir, true)?;
    let mut state = ReplicationState::load(&dir)?;
    if state.role != Role::Primary {
        return Err(QueueError::protocol(format!(
            "{} is a replica of {} (epoch {}); promote it before writing",
            dir.display(),
            state.primary.as_deref().unwrap_or("another node"),
            state.epoch
        )));
    }
    state.primary = Some(options.node.clone());
    state.synchronous = options.mode == ReplicationMode::Synchronous && options.required_acks > 0;
    state.required_acks = u32::try_from(options.required_acks).unwrap_or(u32::MAX);
    state.ack_timeout_ms = u64::try_from(options.ack_timeout.as_millis()).unwrap_or(u64::MAX);
    // The acknowledged word may hold a value of an earlier term of this node (it was primary,
    // became a replica, its suffix was moved aside, now it is primary again): a record written
    // now must not count as acknowledged by it. This leader publishes afresh from what its
    // replicas acknowledge.
    journal
        .meta
        .acked()
        .fetch_min(state.epoch_start, Ordering::SeqCst);
    // `store` also publishes the policy into the meta file every handle reads.
    state.store(&dir)?;
    drop(lock);
    // Retention keeps what each replica lacks, up to the bound (`replica_cursors`).
    let cursors = ReplicaCursors::register(
        journal.clone(),
        &queue,
        &options.replicas,
        options.max_replica_lag_segments,
    )?;

    let config = journal.config().clone();
    let hello = Hello {
        queue: queue.clone(),
        primary: options.node.clone(),
        epoch: state.epoch,
        epoch_start: state.epoch_start,
        message_type: config.type_name.clone(),
        fingerprint: config.fingerprint,
        segment_size: config.segment_size,
        capacity: config.capacity,
        index_interval: config.index_interval,
        max_payload: config.max_payload,
        schema_json: crate::journal::schema_file::read_text(&journal.dir)
            .ok()
            .flatten(),
        // Nothing waits for an asynchronous primary's acknowledgements, and at the `replicated`
        // level a synchronous one waits only for the record to be in the replica's journal: the
        // replica need not sync before it acknowledges (docs/REPLICATION.md, "Modes").
        sync_lazily: options.replicas_sync_lazily(),
        epochs: state
            .lineage()
            .entries()
            .iter()
            .map(|e| super::grpc::proto::EpochStart {
                epoch: e.epoch,
                start: e.start,
            })
            .collect(),
    };
    let mut leader = Leader::new(
        LeaderConfig {
            epoch: state.epoch,
            epoch_start: state.epoch_start,
            required_acks: options.required_acks,
            max_batch: 1 << 20,
            window: options.window,
        },
        0,
    );

    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    // The connections first: they connect and subscribe while the tail watcher finds the tail
    // (a subscription waits for the watcher's first report, below).
    let (conn_stop_tx, conn_stop) = watch::channel(false);
    for replica in &options.replicas {
        #[cfg(feature = "tls")]
        let tls = options.tls.clone();
        #[cfg(not(feature = "tls"))]
        let tls = ();
        tokio::spawn(connection(
            replica.clone(),
            hello.clone(),
            events_tx.clone(),
            conn_stop.clone(),
            tls,
        ));
    }
    let watcher_stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (journal, tx, flag) = (journal.clone(), events_tx.clone(), watcher_stop.clone());
        tokio::task::spawn_blocking(move || spawn_tail_watcher(journal, tx, flag))
            .await
            .map_err(|e| QueueError::Other(e.to_string()))?
    };
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            let _ = conn_stop_tx.send(true);
            return Err(e);
        }
    };
    drop(events_tx);

    let mut links: BTreeMap<String, ReplicaLink> = BTreeMap::new();
    let mut tables = producers::TableSource::new(&dir);
    // What each replica acknowledged as far as the observer was told, across its streams (a
    // stream may end between an acknowledgement and its report).
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut health: BTreeMap<String, ReplicaHealth> = options
        .replicas
        .iter()
        .map(|r| (r.name.clone(), ReplicaHealth::default()))
        .collect();
    let mut report = tokio::time::interval(REPORT_INTERVAL);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping: Option<Instant> = None;
    // Subscriptions that arrived before the tail watcher's first report: the leader takes what a
    // replica holds only up to the tail it knows (none yet), so they wait for it.
    let mut early: VecDeque<Event> = VecDeque::new();
    let mut tail_known = false;
    let result = loop {
        let event = match early.pop_front() {
            Some(e) if tail_known => Some(e),
            other => {
                if let Some(e) = other {
                    early.push_front(e);
                }
                tokio::select! {
                    e = events.recv() => e,
                    _ = stop.wait_for(|s| *s), if stopping.is_none() => {
                        stopping = Some(Instant::now() + options.drain_timeout);
                        continue;
                    }
                    _ = report.tick() => {
                        if options.authority.is_some() {
                            publish_acked(&journal, &queue, leader.acked(), &options);
                        }
                        report_health(&journal, &queue, &leader, &links, &mut health, &options);
                        cursors.check(leader.next_seq(), options.observer.as_ref());
                        continue;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(20)), if stopping.is_some() => None,
                }
            }
        };
        let event = match event {
            Some(e @ Event::Subscribed { .. }) if !tail_known => {
                early.push_back(e);
                continue;
            }
            Some(Event::Committed(next)) => {
                tail_known = true;
                Some(Event::Committed(next))
            }
            other => other,
        };
        let actions = match event {
            Some(Event::Committed(next)) => leader.committed(next),
            Some(Event::Subscribed {
                name,
                epoch,
                next_seq,
                tx,
            }) => {
                tracing::info!(queue = %queue, replica = %name, epoch, next_seq, "replica subscribed");
                if let Some(h) = health.get_mut(&name) {
                    h.error = None;
                }
                match counted.get_mut(&name) {
                    None => {
                        counted.insert(name.clone(), next_seq);
                    }
                    Some(c) if next_seq > *c => {
                        if let Some(m) = &options.observer {
                            m.acked_records(&queue, &name, next_seq - *c);
                        }
                        *c = next_seq;
                    }
                    Some(_) => {}
                }
                cursors.held(&name, next_seq);
                // The primary's oldest segment starts at `oldest`: a replica that needs a record
                // before it (or the END marker of the segment before it) is resynced in full.
                let oldest = journal.earliest_seq().unwrap_or(0);
                let resync = (oldest > 0 && next_seq <= oldest).then_some(oldest);
                if resync.is_some() {
                    tracing::warn!(queue = %queue, replica = %name, next_seq, oldest, "replica needs records retention deleted; resyncing it from the oldest segment");
                    if let Some(m) = &options.observer {
                        m.resync(&queue, &name);
                    }
                }
                // Traces: one span per stream, a child while the replica catches up (no span
                // per frame or record).
                let committed = leader.next_seq();
                let primary_epoch = leader.config().epoch;
                let stream = tracing::info_span!(
                    parent: None, "replication.stream",
                    queue = %queue, replica = %name, epoch = primary_epoch,
                    replica_epoch = epoch, next_seq,
                );
                let catch_up = if let Some(from) = resync {
                    let span = tracing::info_span!(
                        parent: &stream, "replication.resync",
                        queue = %queue, replica = %name, epoch = primary_epoch, from_seq = from,
                        to_seq = committed, replica_next_seq = next_seq,
                    );
                    Some((span, committed))
                } else if next_seq < committed {
                    let span = tracing::info_span!(
                        parent: &stream, "replication.catch_up",
                        queue = %queue, replica = %name, epoch = primary_epoch, from_seq = next_seq,
                        to_seq = committed, records = committed - next_seq,
                    );
                    Some((span, committed))
                } else {
                    None
                };
                links.insert(
                    name.clone(),
                    ReplicaLink {
                        tx,
                        source: None,
                        inflight: VecDeque::new(),
                        acked: next_seq,
                        resync,
                        table_sent: None,
                        cursors_sent: SentCursors::default(),
                        _stream: stream,
                        catch_up,
                    },
                );
                match resync {
                    Some(oldest) => leader.resync(&name, epoch, oldest),
                    None => leader.subscribe(&name, epoch, next_seq),
                }
            }
            Some(Event::Ack {
                name,
                epoch,
                next_seq,
            }) => {
                if let Some(link) = links.get_mut(&name) {
                    let now = Instant::now();
                    while let Some(&(last, sent)) = link.inflight.front() {
                        if last >= next_seq {
                            break;
                        }
                        if let Some(m) = &options.observer {
                            m.ack_latency(&queue, &name, now.duration_since(sent));
                        }
                        link.inflight.pop_front();
                    }
                    link.acked = link.acked.max(next_seq);
                    if link
                        .catch_up
                        .as_ref()
                        .is_some_and(|(_, target)| link.acked >= *target)
                    {
                        // Caught up: the span ends here.
                        link.catch_up = None;
                    }
                    if epoch == leader.config().epoch {
                        cursors.held(&name, next_seq);
                    }
                    let c = counted.entry(name.clone()).or_insert(next_seq);
                    if next_seq > *c {
                        if let Some(m) = &options.observer {
                            m.acked_records(&queue, &name, next_seq - *c);
                        }
                        *c = next_seq;
                    }
                }
                leader.ack(&name, epoch, next_seq)
            }
            Some(Event::Disconnected(name)) => {
                links.remove(&name);
                leader.disconnected(&name);
                Vec::new()
            }
            Some(Event::Failed { name, reason }) => {
                let h = health.entry(name.clone()).or_default();
                // Loud once per distinct failure, quiet while it repeats (retries back off).
                if h.error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(queue = %queue, replica = %name, error = %reason, "replica unreachable");
                }
                h.error = Some(reason);
                Vec::new()
            }
            Some(Event::Damaged(reason)) => {
                if let Some(m) = &options.observer {
                    m.damaged(&queue, &reason);
                }
                Vec::new()
            }
            None => Vec::new(),
        };
        if let Err(e) = execute(
            &journal,
            &queue,
            &mut leader,
            &mut links,
            &mut tables,
            actions,
            &options,
        )
        .await
        {
            break Err(e);
        }
        if options.authority.is_some() {
            // What was withheld while the lease was not (yet) held.
            publish_acked(&journal, &queue, leader.acked(), &options);
        }
        if let Some(deadline) = stopping {
            let caught_up = leader.lag().values().all(|&l| l == 0);
            if caught_up || Instant::now() >= deadline {
                if !caught_up {
                    tracing::warn!(queue = %queue, lag = ?leader.lag(), "stopping before replicas caught up");
                }
                break Ok(());
            }
        }
    };
    if let Some(m) = &options.observer {
        m.stopped(&queue);
    }
    let _ = conn_stop_tx.send(true);
    watcher_stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    result
}
