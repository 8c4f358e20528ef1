//! The primary side of replication over gRPC: [`run_primary`] streams one queue from this node to
//! its replicas. A thin adapter around the I/O-free [`Leader`]: it turns gRPC messages and journal
//! commits into events and carries out the leader's actions with the journal's byte access
//! (`journal::replica`).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::grpc::proto::replication_client::ReplicationClient;
use super::grpc::proto::{
    Frame, Hello, PrimaryMessage, Resync, primary_message, refused, replica_message,
};
use super::replica_cursors::ReplicaCursors;
use super::state::{ReplicationState, Role, state_lock};
use super::{Leader, LeaderAction, LeaderConfig, PrimaryOptions, ReplicaAddr, ReplicationMode};
use crate::journal::replica::ByteSource;
use crate::journal::{Journal, Reader, notify};
use crate::{QueueError, ReplicationError, Result};

enum Event {
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

/// Watches the journal's tail on a thread (futex wait) and reports each advance.
fn spawn_tail_watcher(
    journal: Arc<Journal>,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut reader = Reader::at(journal.clone(), u64::MAX, false)?;
    let mut reported = reader.seq();
    let _ = events.blocking_send(Event::Committed(reported));
    std::thread::Builder::new()
        .name("repliq-tail".into())
        .spawn(move || {
            let meta = &journal.meta;
            let to_tail = |reader: &mut Reader, reported: u64| -> Result<bool> {
                reader.walk_to_tail()?;
                Ok(reader.seq() > reported)
            };
            while !stop.load(Ordering::Acquire) {
                // No spinning before the sleep (unlike `notify::wait_until`): on a small machine
                // a spinning watcher takes the CPU the producer and the replication task need,
                // and a commit wakes it through the futex anyway.
                let advanced = match to_tail(&mut reader, reported) {
                    Ok(true) => Ok(Some(())),
                    Ok(false) => {
                        let (counter, waiters) = (meta.data_notify(), meta.data_waiters());
                        notify::join(waiters);
                        std::sync::atomic::fence(Ordering::SeqCst);
                        let seen = counter.load(Ordering::SeqCst);
                        let moved = match to_tail(&mut reader, reported) {
                            Ok(false) => {
                                crate::raw::futex::wait(counter, seen, Duration::from_millis(100));
                                to_tail(&mut reader, reported)
                            }
                            other => other,
                        };
                        notify::leave(waiters);
                        moved.map(|m| m.then_some(()))
                    }
                    Err(e) => Err(e),
                };
                match advanced {
                    Ok(Some(())) => {
                        reported = reader.seq();
                        if events.blocking_send(Event::Committed(reported)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Said once, here; the daemon reports the queue as damaged.
                        tracing::error!(error = %e, "replication tail watcher stops");
                        let _ = events.blocking_send(Event::Damaged(e.to_string()));
                        return;
                    }
                }
            }
        })
        .map_err(|e| QueueError::io("starting the replication tail watcher", e))
}

struct ReplicaLink {
    tx: mpsc::Sender<PrimaryMessage>,
    source: Option<ByteSource>,
    /// (last sequence of a frame, when it was sent), for the ack latency.
    inflight: VecDeque<(u64, Instant)>,
    acked: u64,
    /// A full resync from this segment is due: the replica needs records retention deleted.
    /// A `Resync` message goes before the first frame sent from there.
    resync: Option<u64>,
}

/// The health of one configured replica, as reported to the observer.
#[derive(Default)]
struct ReplicaHealth {
    up: bool,
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
        // Nothing waits for an asynchronous primary's acknowledgements: the replica need not
        // sync before it acknowledges (docs/REPLICATION.md, "Modes").
        sync_lazily: options.mode == ReplicationMode::Asynchronous,
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
                }
                links.insert(
                    name.clone(),
                    ReplicaLink {
                        tx,
                        source: None,
                        inflight: VecDeque::new(),
                        acked: next_seq,
                        resync,
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
        if let Err(e) = execute(&journal, &queue, &mut leader, &mut links, actions, &options).await
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

/// Reports lag, replica health and the quorum to the observer. A replica is *up* while its
/// stream is open and its oldest unacknowledged frame is younger than the acknowledgement
/// timeout (a stopped or wedged replica keeps its TCP connection but is not up).
fn report_health(
    journal: &Arc<Journal>,
    queue: &str,
    leader: &Leader,
    links: &BTreeMap<String, ReplicaLink>,
    health: &mut BTreeMap<String, ReplicaHealth>,
    options: &PrimaryOptions,
) {
    let Some(m) = &options.observer else {
        return;
    };
    let now = Instant::now();
    let committed = leader.next_seq();
    let lags = leader.lag();
    let mut up_count = 0;
    for replica in &options.replicas {
        let name = &replica.name;
        // A replica that never subscribed is not known to hold anything.
        let lag = lags.get(name).copied().unwrap_or(committed);
        let age = if lag == 0 {
            Duration::ZERO
        } else {
            oldest_missing_age(journal, committed - lag)
        };
        m.lag(queue, name, lag, age);
        let up = links.get(name).is_some_and(|l| {
            l.inflight
                .front()
                .is_none_or(|&(_, sent)| now.duration_since(sent) < options.ack_timeout)
        });
        up_count += usize::from(up);
        let h = health.entry(name.clone()).or_default();
        if h.up && !up {
            tracing::warn!(queue = %queue, replica = %name, lag, "replica is not acknowledging");
        }
        h.up = up;
        m.replica_state(queue, name, up, if up { None } else { h.error.as_deref() });
    }
    m.quorum(queue, options.required_acks, up_count);
}

/// How long ago the record `seq` (the oldest one a replica lacks) was written, by its write
/// time in the journal (zero if it cannot be read).
fn oldest_missing_age(journal: &Arc<Journal>, seq: u64) -> Duration {
    let written = Reader::at(journal.clone(), seq, false)
        .and_then(|mut r| r.peek())
        .ok()
        .flatten()
        .filter(|rec| rec.seq == seq)
        .map(|rec| rec.time);
    let Some(nanos) = written else {
        return Duration::ZERO;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Duration::from_nanos(now.saturating_sub(nanos))
}

/// How long the primary waits for room in a replica's stream before it gives the stream up
/// (the replica is stopped or far slower than the others): one slow replica must not stall
/// acknowledgements from the others or the metrics.
const SEND_STALL: Duration = Duration::from_secs(1);

async fn execute(
    journal: &Arc<Journal>,
    queue: &str,
    leader: &mut Leader,
    links: &mut BTreeMap<String, ReplicaLink>,
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
                        })),
                    });
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
                let mut state = ReplicationState::load(&journal.dir)?;
                state.role = Role::Replica;
                state.synchronous = false;
                state.primary = None;
                state.store(&journal.dir)?;
                return Err(QueueError::protocol(format!(
                    "{}: a replica has seen epoch {epoch}; this node is no longer the primary",
                    journal.dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Publishes the acknowledged sequence where synchronous producers wait for it, if this node
/// may acknowledge: while the lease that made it primary holds ([`Authority`](super::Authority)).
/// A primary paused through a failover (its lease ran out) may still get acknowledgements its
/// replicas sent before they learned of the next epoch: they are withheld, and published later
/// only if the lease holds again (the loop retries with [`Leader::acked`]).
fn publish_acked(journal: &Journal, queue: &str, next_seq: u64, options: &PrimaryOptions) {
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
fn open_source(journal: &Arc<Journal>, from: u64, resync: Option<u64>) -> Result<ByteSource> {
    if resync == Some(from) {
        ByteSource::at_segment_start(journal.clone(), from)
    } else {
        ByteSource::at(journal.clone(), from)
    }
}

fn empty_frame(leader: &Leader, at: u64) -> PrimaryMessage {
    PrimaryMessage {
        kind: Some(primary_message::Kind::Frame(Frame {
            epoch: leader.config().epoch,
            epoch_start: leader.config().epoch_start,
            segment_first_seq: 0,
            offset: 0,
            first_seq: at,
            record_count: 0,
            bytes: Bytes::new(),
        })),
    }
}

/// Keeps a stream to one replica open, reconnecting with backoff.
/// The client side's TLS files, where the feature exists.
#[cfg(feature = "tls")]
type ClientTls = Option<super::TlsFiles>;
#[cfg(not(feature = "tls"))]
type ClientTls = ();

async fn connection(
    replica: ReplicaAddr,
    hello: Hello,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
    tls: ClientTls,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut subscribed = false;
        let began = Instant::now();
        let attempt = connect_once(&replica, &hello, &events, &tls, &mut subscribed);
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        // A stream that was subscribed and lived a while worked until now (ended by the
        // keep-alive timeout, a reset, a restart of the replica): try again at once rather than
        // after the backoff earlier failures left behind (issue 24: streaming again within
        // 5 s). A replica that subscribes and then refuses at once still backs off.
        if subscribed && began.elapsed() >= super::STREAM_KEEPALIVE {
            backoff = Duration::from_millis(50);
        }
        if let Err(e) = &result {
            tracing::debug!(replica = %replica.name, error = %e, "replication stream ended");
            let failed = Event::Failed {
                name: replica.name.clone(),
                reason: e.to_string(),
            };
            if events.send(failed).await.is_err() {
                return;
            }
        } else {
            backoff = Duration::from_millis(50);
        }
        if events
            .send(Event::Disconnected(replica.name.clone()))
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // At most 1 s between attempts: after a partition heals, the next attempt comes within
        // a second (plus the connect timeout of one in flight), and each attempt resolves the
        // replica's address again (a new `Endpoint` per attempt).
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn connect_once(
    replica: &ReplicaAddr,
    hello: &Hello,
    events: &mpsc::Sender<Event>,
    tls: &ClientTls,
    subscribed: &mut bool,
) -> Result<()> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        QueueError::Replication(ReplicationError::PeerUnreachable {
            peer: format!("{} ({})", replica.name, replica.address),
            reason: format!("{what}: {e}"),
        })
    };
    #[cfg(feature = "tls")]
    let scheme = if tls.is_some() { "https" } else { "http" };
    #[cfg(not(feature = "tls"))]
    let (scheme, ()) = ("http", *tls);
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", replica.address))
            .map_err(|e| err("bad address", &e))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            // A replica that vanished without a FIN is found in seconds (see `STREAM_KEEPALIVE`);
            // the next attempt resolves its address again.
            .http2_keep_alive_interval(super::STREAM_KEEPALIVE)
            .keep_alive_timeout(super::STREAM_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(Duration::from_secs(10)));
    // The files are read on every attempt: a rotated certificate is used by the next one.
    #[cfg(feature = "tls")]
    let endpoint = match tls.as_ref() {
        Some(files) => {
            let config = files
                .client_config(&replica.name)
                .map_err(|e| err("TLS configuration", &e))?;
            endpoint
                .tls_config(config)
                .map_err(|e| err("TLS configuration", &e))?
        }
        None => endpoint,
    };
    let channel = endpoint.connect().await.map_err(|e| err("connect", &e))?;
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel::<PrimaryMessage>(64);
    tx.send(PrimaryMessage {
        kind: Some(primary_message::Kind::Hello(hello.clone())),
    })
    .await
    .map_err(|e| err("send", &e))?;
    // Handed to the replication task at the subscription: the stream ends when it drops it.
    let mut tx = Some(tx);
    let mut inbound = client
        .replicate(ReceiverStream::new(rx))
        .await
        .map_err(|e| err("open stream", &e))?
        .into_inner();
    loop {
        let Some(msg) = inbound.message().await.map_err(|e| err("receive", &e))? else {
            return Ok(());
        };
        match msg.kind {
            Some(replica_message::Kind::Subscribe(s)) if !*subscribed => {
                *subscribed = true;
                let Some(tx) = tx.take() else {
                    return Ok(());
                };
                let event = Event::Subscribed {
                    name: replica.name.clone(),
                    epoch: s.epoch,
                    next_seq: s.next_seq,
                    tx,
                };
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            Some(replica_message::Kind::Ack(a)) if *subscribed => {
                let event = Event::Ack {
                    name: replica.name.clone(),
                    epoch: a.epoch,
                    next_seq: a.next_seq,
                };
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            Some(replica_message::Kind::Refused(r)) => {
                tracing::warn!(replica = %replica.name, reason = ?r.reason(), detail = %r.detail, "replica refused the stream");
                if r.reason() == refused::Reason::StaleEpoch {
                    let _ = events
                        .send(Event::Ack {
                            name: replica.name.clone(),
                            epoch: r.epoch,
                            next_seq: r.next_seq,
                        })
                        .await;
                }
                return Err(QueueError::protocol(format!(
                    "{} refused: {}",
                    replica.name, r.detail
                )));
            }
            other => {
                return Err(QueueError::protocol(format!(
                    "{}: unexpected message {other:?}",
                    replica.name
                )));
            }
        }
    }
}
