//! Replication over gRPC: [`run_primary`] streams one queue from this node to its replicas, and
//! [`ReplicaService`] hosts replicas of other nodes' queues. Both are thin adapters around the
//! I/O-free [`Leader`] and [`Follower`]: they translate gRPC messages into state-machine events
//! and carry out the actions with the journal's byte-level access (`journal::replica`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::grpc::proto::replication_client::ReplicationClient;
use super::grpc::proto::replication_server::Replication;
use super::grpc::proto::{
    self, Ack, Frame, Hello, PrimaryMessage, Refused, ReplicaMessage, Subscribe, primary_message,
    refused, replica_message,
};
use super::state::{ReplicationState, Role};
use super::{
    FollowerDecision, FrameHeader, Leader, LeaderAction, LeaderConfig, Refusal, ReplicationMode,
};
use crate::journal::meta::MetaConfig;
use crate::journal::replica::{ByteSink, ByteSource, frame_records, move_aside_from};
use crate::journal::{Journal, Reader, notify};
use crate::server::metrics::{ReplicationMetrics, replica_labels};
use crate::{QueueError, Result};

/// A replica of a queue: a node name and its gRPC address (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAddr {
    /// The replica's node name.
    pub name: String,
    /// Its gRPC address.
    pub address: String,
}

/// How the primary side replicates one queue.
#[derive(Debug, Clone)]
pub struct PrimaryOptions {
    /// This node's name.
    pub node: String,
    /// The replicas.
    pub replicas: Vec<ReplicaAddr>,
    /// Synchronous or asynchronous.
    pub mode: ReplicationMode,
    /// Replicas that must hold a record before it is acknowledged (k of n).
    pub required_acks: usize,
    /// Largest frame, in bytes.
    pub max_frame_bytes: usize,
    /// Records in flight per replica beyond its acknowledgement.
    pub window: u64,
    /// How long a stop waits for replicas to catch up.
    pub drain_timeout: Duration,
    /// How long a synchronous `enqueue` waits for the acknowledgements before it returns
    /// [`QueueError::Replication`].
    pub ack_timeout: Duration,
    /// Metrics to update, if any.
    pub metrics: Option<ReplicationMetrics>,
}

impl PrimaryOptions {
    /// Options with defaults: 256 KiB frames, a window of 65 536 records, all replicas
    /// acknowledging in synchronous mode.
    #[must_use]
    pub fn new(node: impl Into<String>, replicas: Vec<ReplicaAddr>, mode: ReplicationMode) -> Self {
        let required_acks = match mode {
            ReplicationMode::Synchronous => replicas.len(),
            ReplicationMode::Asynchronous => 0,
        };
        PrimaryOptions {
            node: node.into(),
            replicas,
            mode,
            required_acks,
            max_frame_bytes: 256 << 10,
            window: 1 << 16,
            drain_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            metrics: None,
        }
    }
}

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
}

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
            while !stop.load(Ordering::Acquire) {
                let deadline = Instant::now() + Duration::from_millis(100);
                let advanced = notify::wait_until(
                    meta.data_notify(),
                    meta.data_waiters(),
                    Some(deadline),
                    || {
                        while let Some(rec) = reader.peek()? {
                            reader.advance(&rec);
                        }
                        Ok((reader.seq() > reported).then_some(()))
                    },
                );
                match advanced {
                    Ok(Some(())) => {
                        reported = reader.seq();
                        if events.blocking_send(Event::Committed(reported)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "replication tail watcher stops");
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
    let mut state = ReplicationState::load(&dir)?;
    if state.role != Role::Primary {
        return Err(QueueError::Replication(format!(
            "{} is a replica of {} (epoch {}); promote it before writing",
            dir.display(),
            state.primary.as_deref().unwrap_or("another node"),
            state.epoch
        )));
    }
    state.primary = Some(options.node.clone());
    state.synchronous = options.mode == ReplicationMode::Synchronous && options.required_acks > 0;
    state.ack_timeout_ms = u64::try_from(options.ack_timeout.as_millis()).unwrap_or(u64::MAX);
    state.store(&dir)?;
    state.mirror(&journal);

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
    let watcher_stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (journal, tx, flag) = (journal.clone(), events_tx.clone(), watcher_stop.clone());
        tokio::task::spawn_blocking(move || spawn_tail_watcher(journal, tx, flag))
            .await
            .map_err(|e| QueueError::Other(e.to_string()))??
    };
    let (conn_stop_tx, conn_stop) = watch::channel(false);
    for replica in &options.replicas {
        tokio::spawn(connection(
            replica.clone(),
            hello.clone(),
            events_tx.clone(),
            conn_stop.clone(),
        ));
    }
    drop(events_tx);

    let mut links: BTreeMap<String, ReplicaLink> = BTreeMap::new();
    let mut stopping: Option<Instant> = None;
    let result = loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|s| *s), if stopping.is_none() => {
                stopping = Some(Instant::now() + options.drain_timeout);
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if stopping.is_some() => None,
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
                links.insert(
                    name.clone(),
                    ReplicaLink {
                        tx,
                        source: None,
                        inflight: VecDeque::new(),
                        acked: next_seq,
                    },
                );
                leader.subscribe(&name, epoch, next_seq)
            }
            Some(Event::Ack {
                name,
                epoch,
                next_seq,
            }) => {
                if let (Some(link), Some(m)) = (links.get_mut(&name), &options.metrics) {
                    let labels = replica_labels(&queue, &name);
                    let now = Instant::now();
                    while let Some(&(last, sent)) = link.inflight.front() {
                        if last >= next_seq {
                            break;
                        }
                        m.ack_latency_seconds
                            .get_or_create(&labels)
                            .observe(now.duration_since(sent).as_secs_f64());
                        link.inflight.pop_front();
                    }
                    if next_seq > link.acked {
                        m.replicated_records
                            .get_or_create(&labels)
                            .inc_by(next_seq - link.acked);
                        link.acked = next_seq;
                    }
                }
                leader.ack(&name, epoch, next_seq)
            }
            Some(Event::Disconnected(name)) => {
                links.remove(&name);
                leader.disconnected(&name);
                Vec::new()
            }
            None => Vec::new(),
        };
        if let Err(e) = execute(&journal, &queue, &mut leader, &mut links, actions, &options).await
        {
            break Err(e);
        }
        if let Some(m) = &options.metrics {
            let now = Instant::now();
            for (name, lag) in leader.lag() {
                let labels = replica_labels(&queue, &name);
                m.lag_records.get_or_create(&labels).set(lag as i64);
                // Seconds: how long the oldest frame the replica has not acknowledged has been
                // on its way (0 when it holds everything).
                let age = links
                    .get(&name)
                    .and_then(|l| l.inflight.front())
                    .filter(|_| lag > 0)
                    .map_or(0.0, |&(_, sent)| now.duration_since(sent).as_secs_f64());
                m.lag_seconds.get_or_create(&labels).set(age);
            }
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
    let _ = conn_stop_tx.send(true);
    watcher_stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    result
}

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
                    slot => match ByteSource::at(journal.clone(), from) {
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
                    if let Some(m) = &options.metrics {
                        m.replicated_bytes
                            .get_or_create(&replica_labels(queue, &node))
                            .inc_by(raw.bytes.len() as u64);
                    }
                    let first_seq = raw.records.first().map_or(source.next_seq(), |r| r.seq);
                    if let Some(last) = raw.records.last() {
                        link.inflight.push_back((last.seq, Instant::now()));
                    }
                    frames.push(PrimaryMessage {
                        kind: Some(primary_message::Kind::Frame(Frame {
                            epoch: leader.config().epoch,
                            epoch_start: leader.config().epoch_start,
                            segment_first_seq: raw.segment_first_seq,
                            offset: raw.offset as u64,
                            first_seq,
                            record_count: raw.records.len() as u32,
                            bytes: Bytes::from(raw.bytes),
                        })),
                    });
                }
                for f in frames {
                    if link.tx.send(f).await.is_err() {
                        leader.disconnected(&node);
                        break;
                    }
                }
            }
            LeaderAction::Acked { next_seq } => {
                let meta = &journal.meta;
                meta.acked().fetch_max(next_seq, Ordering::SeqCst);
                notify::wake(meta.ack_notify(), meta.ack_waiters());
            }
            LeaderAction::StepDown { epoch } => {
                // Become a replica of the newer primary. The epoch stays the one this node has
                // data of: the new primary's first frame then moves aside whatever this node
                // wrote after the new epoch began.
                let mut state = ReplicationState::load(&journal.dir)?;
                state.role = Role::Replica;
                state.synchronous = false;
                state.primary = None;
                state.store(&journal.dir)?;
                return Err(QueueError::Replication(format!(
                    "{}: a replica has seen epoch {epoch}; this node is no longer the primary",
                    journal.dir.display()
                )));
            }
        }
    }
    Ok(())
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
async fn connection(
    replica: ReplicaAddr,
    hello: Hello,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = connect_once(&replica, &hello, &events);
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = &result {
            tracing::debug!(replica = %replica.name, error = %e, "replication stream ended");
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
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect_once(
    replica: &ReplicaAddr,
    hello: &Hello,
    events: &mpsc::Sender<Event>,
) -> Result<()> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        QueueError::Replication(format!(
            "{} ({}): {what}: {e}",
            replica.name, replica.address
        ))
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", replica.address))
        .map_err(|e| err("bad address", &e))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
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
    let mut inbound = client
        .replicate(ReceiverStream::new(rx))
        .await
        .map_err(|e| err("open stream", &e))?
        .into_inner();
    let mut subscribed = false;
    loop {
        let Some(msg) = inbound.message().await.map_err(|e| err("receive", &e))? else {
            return Ok(());
        };
        match msg.kind {
            Some(replica_message::Kind::Subscribe(s)) if !subscribed => {
                subscribed = true;
                let event = Event::Subscribed {
                    name: replica.name.clone(),
                    epoch: s.epoch,
                    next_seq: s.next_seq,
                    tx: tx.clone(),
                };
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            Some(replica_message::Kind::Ack(a)) if subscribed => {
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
                return Err(QueueError::Replication(format!(
                    "{} refused: {}",
                    replica.name, r.detail
                )));
            }
            other => {
                return Err(QueueError::Replication(format!(
                    "{}: unexpected message {other:?}",
                    replica.name
                )));
            }
        }
    }
}

/// The gRPC service that hosts replicas of other nodes' queues under one directory.
#[derive(Debug, Clone)]
pub struct ReplicaService {
    root: PathBuf,
}

impl ReplicaService {
    /// Hosts replicas under `root` (one sub-directory per queue).
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        ReplicaService { root }
    }

    /// The tonic server for this service.
    #[must_use]
    pub fn into_server(self) -> proto::replication_server::ReplicationServer<ReplicaService> {
        proto::replication_server::ReplicationServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

type ReplyTx = mpsc::Sender<std::result::Result<ReplicaMessage, Status>>;

#[tonic::async_trait]
impl Replication for ReplicaService {
    type ReplicateStream = ReceiverStream<std::result::Result<ReplicaMessage, Status>>;

    async fn replicate(
        &self,
        request: Request<Streaming<PrimaryMessage>>,
    ) -> std::result::Result<Response<Self::ReplicateStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let root = self.root.clone();
        tokio::spawn(async move {
            if let Err((reason, detail, epoch, next_seq)) = serve_stream(root, inbound, &tx).await {
                tracing::warn!(?reason, %detail, "replication stream refused");
                let refused = Refused {
                    reason: reason as i32,
                    detail,
                    epoch,
                    next_seq,
                };
                let _ = tx
                    .send(Ok(ReplicaMessage {
                        kind: Some(replica_message::Kind::Refused(refused)),
                    }))
                    .await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Refusing = (refused::Reason, String, u64, u64);

fn storage(e: impl std::fmt::Display) -> Refusing {
    (refused::Reason::Storage, e.to_string(), 0, 0)
}

fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

fn open_replica(
    root: &Path,
    hello: &Hello,
) -> std::result::Result<(Arc<Journal>, PathBuf), Refusing> {
    if !valid_queue_name(&hello.queue) {
        return Err((
            refused::Reason::IncompatibleQueue,
            format!("invalid queue name {:?}", hello.queue),
            0,
            0,
        ));
    }
    let dir = root.join(&hello.queue);
    let existed = dir.join("queue.meta").exists();
    let config = MetaConfig {
        type_name: hello.message_type.clone(),
        fingerprint: hello.fingerprint,
        segment_size: hello.segment_size,
        capacity: hello.capacity,
        index_interval: hello.index_interval,
        max_payload: hello.max_payload,
        lease_ms: 200,
        created_unix_nanos: 0,
    };
    let (journal, _) = Journal::create_or_open(&dir, &config, false).map_err(storage)?;
    let held = journal.config();
    if held.fingerprint != config.fingerprint
        || held.type_name != config.type_name
        || held.segment_size != config.segment_size
        || held.index_interval != config.index_interval
    {
        return Err((
            refused::Reason::IncompatibleQueue,
            format!(
                "{} holds `{}` (fingerprint {:#018x}, segments of {} bytes), the primary sends \
                 `{}` (fingerprint {:#018x}, segments of {} bytes)",
                dir.display(),
                held.type_name,
                held.fingerprint,
                held.segment_size,
                config.type_name,
                config.fingerprint,
                config.segment_size
            ),
            0,
            0,
        ));
    }
    if !existed {
        // A new replica: it has seen no epoch yet.
        let state = ReplicationState {
            role: Role::Replica,
            epoch: 0,
            epoch_start: 0,
            primary: Some(hello.primary.clone()),
            ..ReplicationState::default()
        };
        state.store(&dir).map_err(storage)?;
    }
    Ok((journal, dir))
}

async fn reply(tx: &ReplyTx, kind: replica_message::Kind) -> std::result::Result<(), Refusing> {
    tx.send(Ok(ReplicaMessage { kind: Some(kind) }))
        .await
        .map_err(|_| storage("the primary went away"))
}

async fn serve_stream(
    root: PathBuf,
    mut inbound: Streaming<PrimaryMessage>,
    tx: &ReplyTx,
) -> std::result::Result<(), Refusing> {
    let hello = match inbound.message().await {
        Ok(Some(PrimaryMessage {
            kind: Some(primary_message::Kind::Hello(h)),
        })) => h,
        Ok(_) => return Err(storage("the stream must start with a Hello")),
        Err(e) => return Err(storage(e)),
    };
    let (journal, dir) = tokio::task::block_in_place(|| open_replica(&root, &hello))?;
    let mut state = ReplicationState::load(&dir).map_err(storage)?;
    if state.role == Role::Primary && state.epoch >= hello.epoch {
        return Err((
            refused::Reason::StaleEpoch,
            format!(
                "{} is primary of epoch {} here; {} sent epoch {}",
                hello.queue, state.epoch, hello.primary, hello.epoch
            ),
            state.epoch,
            0,
        ));
    }
    let mut sink =
        tokio::task::block_in_place(|| ByteSink::open(journal.clone())).map_err(storage)?;
    let mut follower = super::Follower::new(state.epoch, sink.next_seq());
    reply(
        tx,
        replica_message::Kind::Subscribe(Subscribe {
            epoch: follower.epoch(),
            next_seq: follower.next_seq(),
        }),
    )
    .await?;
    let mut ended = false;
    while !ended {
        let mut batch = match inbound.message().await {
            Ok(Some(PrimaryMessage {
                kind: Some(primary_message::Kind::Frame(f)),
            })) => vec![f],
            Ok(None) => return Ok(()),
            Ok(Some(_)) => return Err(storage("unexpected message after Hello")),
            Err(e) => return Err(storage(e)),
        };
        // Take every frame that has already arrived, so that one msync and one acknowledgement
        // cover them all (a sync per frame would bound a stream by the disk's sync latency).
        while batch.len() < 256 {
            match inbound.message().now_or_never() {
                None => break,
                Some(Ok(Some(PrimaryMessage {
                    kind: Some(primary_message::Kind::Frame(f)),
                }))) => batch.push(f),
                Some(Ok(None)) => {
                    ended = true;
                    break;
                }
                Some(Ok(Some(_))) => return Err(storage("unexpected message after Hello")),
                Some(Err(e)) => return Err(storage(e)),
            }
        }
        let mut ack = None;
        let mut refusal = None;
        for frame in batch {
            // This node may have been promoted while the stream was open: a newer epoch here fences
            // the old primary.
            let here = journal.epoch_word().load(Ordering::Acquire);
            if here > frame.epoch
                && ReplicationState::load(&dir).is_ok_and(|s| s.role == Role::Primary)
            {
                refusal = Some((
                    refused::Reason::StaleEpoch,
                    format!(
                        "{} was promoted to epoch {here}; frames of epoch {} are refused",
                        hello.queue, frame.epoch
                    ),
                    here,
                    follower.next_seq(),
                ));
                break;
            }
            let records = match frame_records(&frame.bytes) {
                Ok(records) => records,
                Err(e) => {
                    refusal = Some((
                        refused::Reason::Diverged,
                        format!("malformed frame: {e}"),
                        follower.epoch(),
                        follower.next_seq(),
                    ));
                    break;
                }
            };
            let header = FrameHeader {
                epoch: frame.epoch,
                epoch_start: frame.epoch_start,
                records,
            };
            let decision = follower.on_frame(&header, |s| sink.held_crc(s));
            match decision {
                FollowerDecision::Append {
                    move_aside_from: aside,
                    ..
                } => {
                    let applied = tokio::task::block_in_place(|| -> Result<()> {
                        if let Some(from) = aside {
                            let moved = move_aside_from(&journal, from, frame.epoch)?;
                            tracing::warn!(queue = %hello.queue, from, moved = %moved.display(), "moved an unreplicated suffix aside");
                            sink = ByteSink::open(journal.clone())?;
                        }
                        if state.epoch != frame.epoch || state.role != Role::Replica {
                            state = ReplicationState {
                                role: Role::Replica,
                                epoch: frame.epoch,
                                epoch_start: frame.epoch_start,
                                primary: Some(hello.primary.clone()),
                                ..ReplicationState::default()
                            };
                            state.store(&dir)?;
                            state.mirror(&journal);
                        }
                        if !frame.bytes.is_empty() {
                            sink.apply(
                                frame.segment_first_seq,
                                frame.offset as usize,
                                &frame.bytes,
                            )?;
                        }
                        Ok(())
                    });
                    if let Err(e) = applied {
                        refusal = Some(storage(e));
                        break;
                    }
                    let next_seq = match header.records.last() {
                        Some(last) => follower.appended(*last),
                        None => follower.next_seq(),
                    };
                    ack = Some((follower.epoch(), next_seq));
                }
                FollowerDecision::Duplicate { durable } => {
                    // Every record is held, but the bytes may still hold entries that carry no
                    // record past this replica's tail: the END marker of a full segment (sent
                    // alone when the replica is caught up at a roll) or an abandoned extent.
                    // The sink compares and skips what it holds and writes the rest.
                    if !frame.bytes.is_empty()
                        && let Err(e) = tokio::task::block_in_place(|| {
                            sink.apply(frame.segment_first_seq, frame.offset as usize, &frame.bytes)
                        })
                    {
                        refusal = Some(storage(e));
                        break;
                    }
                    ack = Some((follower.epoch(), durable));
                }
                FollowerDecision::Refuse(r) => {
                    let reason = match r {
                        Refusal::StaleEpoch { .. } => refused::Reason::StaleEpoch,
                        _ => refused::Reason::Diverged,
                    };
                    refusal = Some((reason, r.to_string(), follower.epoch(), follower.next_seq()));
                    break;
                }
            }
        }
        // Durable before acknowledged, also when a later frame of the batch is refused.
        tokio::task::block_in_place(|| sink.sync()).map_err(storage)?;
        if let Some((epoch, next_seq)) = ack {
            reply(tx, replica_message::Kind::Ack(Ack { epoch, next_seq })).await?;
        }
        if let Some(r) = refusal {
            return Err(r);
        }
    }
    Ok(())
}
