//! The replica side of replication over gRPC: [`ReplicaService`] hosts replicas of other nodes'
//! queues under one directory. A thin adapter around the I/O-free [`Follower`]: frames go in,
//! the journal's byte sink (`journal::replica`) applies them, acknowledgements come out.
//!
//! Each queue has **one** follower and one byte sink, shared by every stream that reaches it
//! ([`QueueReplica`]): the follower decides which stream may write (the newest epoch's last
//! Hello), so a stream opened by a primary that has since been superseded (a paused old primary
//! resuming) can neither write nor be acknowledged. A superseded stream is ended at once, with
//! the refusal that tells its primary why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::PeerSet;
use super::consumer_cursors;
use super::grpc::proto::replication_server::Replication;
use super::grpc::proto::{
    self, Ack, Hello, PrimaryMessage, Refused, ReplicaMessage, Subscribe, primary_message, refused,
    replica_message,
};
use super::producer_table::{self, REPLICA_PRODUCERS_FILE, RollBack, ShippedTables};
use super::state::{ReplicationState, Role, state_lock};
use super::{EpochStart, Follower, FollowerDecision, FrameHeader, Lineage, Refusal, StreamId};
use crate::journal::meta::MetaConfig;
use crate::journal::replica::{ByteSink, frame_records, move_aside_from};
use crate::journal::{InitialPolicy, Journal, Policy};
use crate::{QueueError, Result};
/// The gRPC service that hosts replicas of other nodes' queues under one directory.
#[derive(Debug, Clone)]
pub struct ReplicaService {
    root: PathBuf,
    peers: PeerSet,
    queues: Arc<Mutex<HashMap<String, Arc<SharedQueue>>>>,
    /// Streams must come over mutual TLS from a certificate issued to the `Hello`'s name.
    #[cfg(feature = "tls")]
    authenticate: bool,
}

/// One queue as every stream to it sees it.
#[derive(Debug)]
struct SharedQueue {
    replica: Mutex<Option<QueueReplica>>,
    /// The writer stream, announced to the others so that a superseded stream ends at once
    /// (an idle one too).
    writer: tokio::sync::watch::Sender<Option<StreamId>>,
}

impl SharedQueue {
    fn lock(&self) -> MutexGuard<'_, Option<QueueReplica>> {
        // A panic while applying cannot leave a half-updated follower that matters: the stream
        // that panicked is gone and the next Hello re-reads the journal (`refresh`).
        self.replica.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        })
    }
}

/// The replica of one queue: its journal, the sink that appends to it, its durable replication
/// state and the follower that decides what the streams may write.
#[derive(Debug)]
struct QueueReplica {
    journal: Arc<Journal>,
    dir: PathBuf,
    state: ReplicationState,
    sink: ByteSink,
    follower: Follower,
    /// Producers' tables shipped with frames that wait until this replica holds what they
    /// claim.
    tables: ShippedTables,
}

impl ReplicaService {
    /// Hosts replicas under `root` (one sub-directory per queue) for any primary that connects
    /// ([`PeerSet::any`]): for tests and trusted single-tenant setups. A node daemon uses
    /// [`ReplicaService::with_peers`].
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self::with_peers(root, PeerSet::any())
    }

    /// Hosts replicas under `root` for the primaries in `peers` only. A stream whose `Hello`
    /// names anyone else is refused (`NOT_A_PEER`) before anything on disk is read or written,
    /// so a stranger claiming a newer epoch cannot demote a primary.
    #[must_use]
    pub fn with_peers(root: PathBuf, peers: PeerSet) -> Self {
        ReplicaService {
            root,
            peers,
            queues: Arc::default(),
            #[cfg(feature = "tls")]
            authenticate: false,
        }
    }

    /// Requires every stream to come over mutual TLS from a client whose certificate is issued
    /// to the name in its `Hello` (which must also be a peer): the name cannot be claimed by
    /// anyone else. Serve the service from a TLS acceptor that asks for client certificates
    /// (`repliqd` does, when `server.tls` is configured); a stream without one is refused
    /// (`NOT_A_PEER`) before anything on disk is read or written.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn authenticated(mut self) -> Self {
        self.authenticate = true;
        self
    }

    fn queue(&self, name: &str) -> Arc<SharedQueue> {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queues
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(SharedQueue {
                    replica: Mutex::new(None),
                    writer: tokio::sync::watch::Sender::new(None),
                })
            })
            .clone()
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
        #[cfg(feature = "tls")]
        let peer: PeerCerts = request
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
            .and_then(tonic::transport::server::TlsConnectInfo::peer_certs);
        #[cfg(not(feature = "tls"))]
        let peer: PeerCerts = ();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let service = self.clone();
        // Traces: one span per received stream (fields filled in from its Hello).
        let span = tracing::info_span!(
            parent: None, "replication.receive",
            queue = tracing::field::Empty, primary = tracing::field::Empty,
            epoch = tracing::field::Empty, refused = tracing::field::Empty,
        );
        let stream = async move {
            if let Err(Refusing {
                reason,
                detail,
                epoch,
                next_seq,
            }) = serve_stream(&service, peer, inbound, &tx).await
            {
                tracing::Span::current().record("refused", tracing::field::debug(reason));
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
        };
        tokio::spawn(tracing::Instrument::instrument(stream, span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why this replica ends a stream: what its `Refused` message tells the primary.
#[derive(Debug)]
struct Refusing {
    reason: refused::Reason,
    detail: String,
    /// The newest epoch this replica knows.
    epoch: u64,
    /// The next sequence number this replica needs.
    next_seq: u64,
}

impl Refusing {
    fn new(reason: refused::Reason, detail: impl Into<String>, epoch: u64, next_seq: u64) -> Self {
        Refusing {
            reason,
            detail: detail.into(),
            epoch,
            next_seq,
        }
    }
}

/// The client's certificate chain, as the TLS handshake verified it.
#[cfg(feature = "tls")]
type PeerCerts = Option<Arc<Vec<rustls_pki_types::CertificateDer<'static>>>>;
#[cfg(not(feature = "tls"))]
type PeerCerts = ();

/// The primary's side of the stream failed (a reset, a keep-alive timeout): nothing to refuse,
/// but the stream ends, and the log says why (not as a storage error).
fn broken(e: Status) -> Refusing {
    Refusing::new(
        refused::Reason::Unspecified,
        format!("the stream from the primary broke: {e}"),
        0,
        0,
    )
}

/// The primary broke the protocol (a message out of place).
fn protocol(detail: &str) -> Refusing {
    Refusing::new(refused::Reason::Unspecified, detail, 0, 0)
}

fn storage(e: impl std::fmt::Display) -> Refusing {
    Refusing::new(refused::Reason::Storage, e.to_string(), 0, 0)
}

/// A frame the sink could not apply: bytes that do not agree with the records (a checksum, an
/// offset gap, a torn record: `Corrupt`) are the corruption code, anything else (the disk) the
/// storage one, so that the primary's log says which side is at fault.
fn applying(e: QueueError) -> Refusing {
    match e {
        QueueError::Corrupt { .. } => Refusing::new(refused::Reason::Diverged, e.to_string(), 0, 0),
        other => storage(other),
    }
}

fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// The queue a Hello describes, checked before anything on disk is touched: its name and its
/// parameters.
fn hello_config(hello: &Hello) -> std::result::Result<MetaConfig, Refusing> {
    if !valid_queue_name(&hello.queue) {
        return Err(Refusing::new(
            refused::Reason::IncompatibleQueue,
            format!("invalid queue name {:?}", hello.queue),
            0,
            0,
        ));
    }
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
    if let Err(why) = config.validate() {
        return Err(Refusing::new(
            refused::Reason::InvalidHello,
            format!("queue {:?}: {why}", hello.queue),
            0,
            0,
        ));
    }
    Ok(config)
}

fn open_replica(
    root: &Path,
    hello: &Hello,
) -> std::result::Result<(Arc<Journal>, PathBuf), Refusing> {
    let config = hello_config(hello)?;
    let dir = root.join(&hello.queue);
    let existed = dir.join("queue.meta").exists();
    let dir_existed = dir.exists();
    // A new replica is a replica from its first byte: the node policy of this root (meant for
    // queues this node writes) does not apply.
    let replica = InitialPolicy::Explicit(Policy {
        role: Role::Replica,
        epoch: 0,
        required_acks: 0,
        ack_timeout: crate::journal::DEFAULT_ACK_TIMEOUT,
    });
    let (journal, _) = match Journal::create_or_open(&dir, &config, false, replica) {
        Ok(j) => j,
        Err(e) => {
            if !dir_existed {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(storage(e));
        }
    };
    let held = journal.config();
    if held.fingerprint != config.fingerprint
        || held.type_name != config.type_name
        || held.segment_size != config.segment_size
        || held.index_interval != config.index_interval
    {
        return Err(Refusing::new(
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
    // The primary's schema file, verbatim, if it is one for this queue's type.
    if let Some(text) = &hello.schema_json {
        let fits = crate::descriptor::Schema::from_json(text)
            .is_ok_and(|s| s.fingerprint == held.fingerprint && s.name == held.type_name);
        if fits {
            crate::journal::schema_file::publish(&dir, text).map_err(storage)?;
        }
    }
    Ok((journal, dir))
}

async fn reply(tx: &ReplyTx, kind: replica_message::Kind) -> std::result::Result<(), Refusing> {
    tx.send(Ok(ReplicaMessage { kind: Some(kind) }))
        .await
        .map_err(|_| protocol("the primary went away"))
}

async fn serve_stream(
    service: &ReplicaService,
    peer: PeerCerts,
    mut inbound: Streaming<PrimaryMessage>,
    tx: &ReplyTx,
) -> std::result::Result<(), Refusing> {
    let hello = match inbound.message().await {
        Ok(Some(PrimaryMessage {
            kind: Some(primary_message::Kind::Hello(h)),
        })) => h,
        Ok(_) => return Err(protocol("the stream must start with a Hello")),
        Err(e) => return Err(broken(e)),
    };
    let span = tracing::Span::current();
    span.record("queue", hello.queue.as_str());
    span.record("primary", hello.primary.as_str());
    span.record("epoch", hello.epoch);
    if !service.peers.allows(&hello.primary) {
        return Err(Refusing::new(
            refused::Reason::NotAPeer,
            format!(
                "{:?} is not a peer of this node; replication of {:?} refused",
                hello.primary, hello.queue
            ),
            0,
            0,
        ));
    }
    #[cfg(feature = "tls")]
    if service.authenticate {
        let checked = match &peer {
            Some(certs) => {
                super::tls::check_peer_identity(certs, &service.peers.identity_of(&hello.primary))
            }
            None => Err("the stream did not come over mutual TLS".into()),
        };
        if let Err(why) = checked {
            return Err(Refusing::new(
                refused::Reason::NotAPeer,
                format!(
                    "{:?} is not authenticated: {why}; replication of {:?} refused",
                    hello.primary, hello.queue
                ),
                0,
                0,
            ));
        }
    }
    #[cfg(not(feature = "tls"))]
    let () = peer;
    let root = service.root.clone();
    let (journal, dir) = blocking(|| open_replica(&root, &hello))?;
    let shared = service.queue(&hello.queue);
    // The Hello is decided under the queue's lock and the replication lock: the new epoch (and
    // the move-aside it may need) is durable before the primary is told where to start.
    let (stream, epoch, next_seq) = blocking(|| admit(&shared, journal, &dir, &hello))?;
    shared.writer.send_replace(Some(stream));
    let mut writer = shared.writer.subscribe();
    reply(
        tx,
        replica_message::Kind::Subscribe(Subscribe { epoch, next_seq }),
    )
    .await?;
    let stream = Stream {
        id: stream,
        hello: &hello,
        shared: &shared,
    };
    // Asynchronous primaries let this replica acknowledge before it syncs: it syncs in the
    // background at most `LAZY_SYNC` after it applied a record (and at the end of the stream).
    let lazy = hello.sync_lazily;
    let mut unsynced_since: Option<Instant> = None;
    let mut syncing: Option<JoinHandle<Result<()>>> = None;
    // A `Resync` announced the primary's oldest segment: applies to the next frame of it.
    let mut resync_at: Option<u64> = None;
    let streamed: std::result::Result<(), Refusing> = async {
        let mut ended = false;
        while !ended {
            let deadline = unsynced_since.map(|since| since + LAZY_SYNC);
            let first = tokio::select! {
                m = inbound.message() => m,
                () = superseded(&mut writer, stream.id) => return Err(stream.superseded()),
                () = sleep_until(deadline) => {
                    // The stream is idle: waiting for a sync still in flight costs nothing.
                    sync_in_background(stream.shared, &mut syncing, true)
                        .await
                        .map_err(storage)?;
                    unsynced_since = None;
                    continue;
                }
            };
            let mut batch = match first {
                Ok(Some(PrimaryMessage {
                    kind: Some(primary_message::Kind::Frame(f)),
                })) => vec![f],
                Ok(Some(PrimaryMessage {
                    kind: Some(primary_message::Kind::Resync(r)),
                })) => {
                    resync_at = Some(r.segment_first_seq);
                    continue;
                }
                Ok(None) => return Ok(()),
                Ok(Some(_)) => return Err(protocol("unexpected message after Hello")),
                Err(e) => return Err(broken(e)),
            };
            // Take every frame that has already arrived, so that one msync and one
            // acknowledgement cover them all (a sync per frame would bound a stream by the disk's
            // sync latency).
            let mut next_resync = None;
            while batch.len() < 256 {
                match inbound.message().now_or_never() {
                    None => break,
                    Some(Ok(Some(PrimaryMessage {
                        kind: Some(primary_message::Kind::Frame(f)),
                    }))) => batch.push(f),
                    Some(Ok(Some(PrimaryMessage {
                        kind: Some(primary_message::Kind::Resync(r)),
                    }))) => {
                        // Its frame comes next: take it into the next batch.
                        next_resync = Some(r.segment_first_seq);
                        break;
                    }
                    Some(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Some(Ok(Some(_))) => return Err(protocol("unexpected message after Hello")),
                    Some(Err(e)) => return Err(broken(e)),
                }
            }
            // One blocking section per batch: the lock, the appends and (unless lazy) the msync.
            // A small batch (a synchronous primary's frames) runs on this task's thread: moving
            // the worker's other tasks to another thread (`block_in_place`) costs more wake-ups
            // than its page-cache writes and one-page msync take.
            let small = batch.iter().map(|f| f.bytes.len()).sum::<usize>() <= INLINE_BATCH_BYTES;
            let apply = || apply_batch(&stream, batch, &mut resync_at, !lazy);
            let (ack, refusal) = if small { apply() } else { blocking(apply) }?;
            resync_at = next_resync.or(resync_at);
            if lazy && ack.is_some() {
                let since = *unsynced_since.get_or_insert_with(Instant::now);
                // Frames keep coming: a sync still in flight is not waited for (the disk may
                // take longer than the stream); the next batch tries again.
                if since.elapsed() >= LAZY_SYNC
                    && sync_in_background(stream.shared, &mut syncing, false)
                        .await
                        .map_err(storage)?
                {
                    unsynced_since = None;
                }
            }
            if let Some((epoch, next_seq)) = ack {
                reply(tx, replica_message::Kind::Ack(Ack { epoch, next_seq })).await?;
            }
            if let Some(r) = refusal {
                return Err(r);
            }
        }
        Ok(())
    }
    .await;
    if lazy {
        // Whatever the stream's end, what was acknowledged gets synced now.
        if let Some(h) = syncing.take() {
            let _ = h.await;
        }
        blocking(|| match shared.lock().as_mut() {
            Some(replica) => replica.sink.sync(),
            None => Ok(()),
        })
        .map_err(storage)?;
    }
    streamed
}

/// One stream to a queue, as the frames it brings are applied.
struct Stream<'a> {
    id: StreamId,
    hello: &'a Hello,
    shared: &'a SharedQueue,
}

impl Stream<'_> {
    /// The refusal that ends this stream once a newer one took over: a fence for its primary if
    /// the replica now follows a newer epoch (the primary steps down), a plain end otherwise.
    fn superseded(&self) -> Refusing {
        let (epoch, next_seq) = self
            .shared
            .lock()
            .as_ref()
            .map_or((0, 0), |r| (r.follower.epoch(), r.follower.next_seq()));
        if epoch > self.hello.epoch {
            Refusing::new(
                refused::Reason::StaleEpoch,
                format!(
                    "{}: a primary of epoch {epoch} took over; frames of epoch {} are refused",
                    self.hello.queue, self.hello.epoch
                ),
                epoch,
                next_seq,
            )
        } else {
            Refusing::new(
                refused::Reason::Superseded,
                format!(
                    "{}: a newer stream of epoch {epoch} took over this one",
                    self.hello.queue
                ),
                epoch,
                next_seq,
            )
        }
    }
}

/// Resolves once the writer announced for the queue is no longer `me`.
async fn superseded(writer: &mut tokio::sync::watch::Receiver<Option<StreamId>>, me: StreamId) {
    if writer.wait_for(|w| *w != Some(me)).await.is_err() {
        // The queue's sender is never dropped while a stream holds the queue.
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The primary's epoch history a Hello carries, which must be in order and, unless empty (a
/// primary that predates histories), end with the Hello's own epoch: a history that names
/// another last epoch would relabel records this replica acknowledged in the Hello's epoch, and a
/// later Hello could move them aside.
fn hello_lineage(hello: &Hello) -> std::result::Result<Lineage, Refusing> {
    let lineage = Lineage::checked(
        hello
            .epochs
            .iter()
            .map(|e| EpochStart {
                epoch: e.epoch,
                start: e.start,
            })
            .collect(),
    )
    .ok_or_else(|| {
        Refusing::new(
            refused::Reason::InvalidHello,
            format!(
                "malformed Hello from {}: its epoch history {:?} is not in order",
                hello.primary, hello.epochs
            ),
            0,
            0,
        )
    })?;
    if let Some(last) = hello.epochs.last()
        && last.epoch != hello.epoch
    {
        return Err(Refusing::new(
            refused::Reason::InvalidHello,
            format!(
                "malformed Hello from {}: its epoch history {:?} does not end with its epoch {}",
                hello.primary, hello.epochs, hello.epoch
            ),
            0,
            0,
        ));
    }
    Ok(lineage)
}

/// Admits a stream's Hello: opens (or re-reads) the queue's replica, lets the follower decide,
/// carries out a move-aside and stores the newer epoch durably. Returns the stream's identity and
/// what to subscribe with (epoch, next sequence).
fn admit(
    shared: &SharedQueue,
    journal: Arc<Journal>,
    dir: &Path,
    hello: &Hello,
) -> std::result::Result<(StreamId, u64, u64), Refusing> {
    let primary_lineage = hello_lineage(hello)?;
    let mut guard = shared.lock();
    let _lock = state_lock(dir, false).map_err(storage)?;
    let state = ReplicationState::load(dir).map_err(storage)?;
    if state.role == Role::Primary && state.epoch >= hello.epoch {
        return Err(Refusing::new(
            refused::Reason::StaleEpoch,
            format!(
                "{} is primary of epoch {} here; {} sent epoch {}",
                hello.queue, state.epoch, hello.primary, hello.epoch
            ),
            state.epoch,
            0,
        ));
    }
    // A replica held from an earlier stream stays valid while this node stayed a replica; after
    // a promotion local producers wrote, so the journal's tail is read afresh.
    let fresh = match guard.as_ref() {
        Some(r) => state.role != Role::Replica || r.state.epoch != state.epoch,
        None => true,
    };
    if fresh {
        let sink = ByteSink::open(journal.clone()).map_err(storage)?;
        let follower = Follower::new(state.epoch, sink.next_seq(), state.lineage());
        *guard = Some(QueueReplica {
            journal,
            dir: dir.to_path_buf(),
            state,
            sink,
            follower,
            tables: ShippedTables::default(),
        });
    }
    let Some(replica) = guard.as_mut() else {
        return Err(storage("the queue's replica vanished"));
    };
    let accepted = replica
        .follower
        .on_hello(hello.epoch, hello.epoch_start, &primary_lineage)
        .map_err(|r| refusing(&r, &replica.follower))?;
    if let Some(from) = accepted.move_aside_from {
        let moved = move_aside_from(&replica.journal, from, hello.epoch).map_err(storage)?;
        tracing::warn!(queue = %hello.queue, from, moved = %moved.display(), "moved an unreplicated suffix aside");
        replica.sink = ByteSink::open(replica.journal.clone()).map_err(storage)?;
        roll_back_producers(dir, from).map_err(storage)?;
    }
    // Tables shipped by an earlier stream: this one sends its primary's own.
    replica.tables.clear();
    follow_epoch(
        &mut replica.state,
        hello.epoch,
        hello.epoch_start,
        &hello.primary,
        replica.follower.lineage(),
        dir,
    )
    .map_err(storage)?;
    Ok((
        accepted.stream,
        replica.follower.epoch(),
        replica.follower.next_seq(),
    ))
}

/// The refusal a follower's decision becomes on the wire.
fn refusing(r: &Refusal, follower: &Follower) -> Refusing {
    let reason = match r {
        Refusal::StaleEpoch { .. } | Refusal::Promoted { .. } => refused::Reason::StaleEpoch,
        Refusal::Superseded { .. } => refused::Reason::Superseded,
        Refusal::Gap { .. } | Refusal::NotConsecutive { .. } | Refusal::Diverged { .. } => {
            refused::Reason::Diverged
        }
    };
    Refusing::new(reason, r.to_string(), follower.epoch(), follower.next_seq())
}

/// Batches of at most this many bytes are applied (and synced) on the stream's task without
/// `block_in_place`: a page-cache write and an msync of a few pages block the worker about as long
/// as a wake-up of another thread takes.
const INLINE_BATCH_BYTES: usize = 16 << 10;

/// How long an asynchronous primary's records may stay applied and acknowledged on a replica
/// before the replica syncs them (`Hello.sync_lazily`).
const LAZY_SYNC: Duration = Duration::from_millis(200);

/// Starts a background sync of everything the sink applied since the last one, after the sync in
/// flight, if any, finished: with `wait`, waits for it; without, returns `Ok(false)` (nothing
/// started) while it runs. A failed sync is an error.
async fn sync_in_background(
    shared: &SharedQueue,
    syncing: &mut Option<JoinHandle<Result<()>>>,
    wait: bool,
) -> Result<bool> {
    if !wait && syncing.as_ref().is_some_and(|h| !h.is_finished()) {
        return Ok(false);
    }
    if let Some(h) = syncing.take() {
        h.await.map_err(|e| QueueError::Other(e.to_string()))??;
    }
    let Some(unsynced) = shared.lock().as_mut().map(|r| r.sink.take_unsynced()) else {
        return Ok(true);
    };
    *syncing = Some(tokio::task::spawn_blocking(move || unsynced.sync()));
    Ok(true)
}

/// What a batch came to: the acknowledgement to send, (epoch, next sequence), and the refusal
/// that ended it early.
type BatchOutcome = (Option<(u64, u64)>, Option<Refusing>);

/// Applies a batch of frames of `stream` under the queue's lock and the replication lock (held
/// shared: a promotion in any process sees none or all of the batch, so no record of the old
/// primary lands after the new epoch's start). The follower refuses every frame of a stream that
/// is no longer the writer. Returns the acknowledgement to send, (epoch, next sequence), and the
/// refusal that ended the batch early, if any. With `sync`, everything applied is synced before
/// it returns; a refusal syncs too (durable before acknowledged, also when a later frame is
/// refused).
fn apply_batch(
    stream: &Stream<'_>,
    batch: Vec<proto::Frame>,
    resync_at: &mut Option<u64>,
    sync: bool,
) -> std::result::Result<BatchOutcome, Refusing> {
    let hello = stream.hello;
    let mut guard = stream.shared.lock();
    let Some(replica) = guard.as_mut() else {
        return Err(stream.superseded());
    };
    let QueueReplica {
        journal,
        dir,
        state,
        sink,
        follower,
        tables,
    } = replica;
    let mut ack = None;
    let mut refusal = None;
    // The newest consumer cursors a frame of this batch carried.
    let mut cursors = None;
    let lock = state_lock(dir, false).map_err(storage)?;
    // This node may have been promoted (`repliq promote`, the election, another process) while
    // the stream was open: its durable epoch is newer than the follower's. Whatever its role now
    // (it may have been fenced again since), no stream of an older epoch writes any more: an old
    // primary's stream that outlived the promotion must not write over this node's own records
    // of the newer epoch (found by the in-process simulation with the keep-alive off).
    let here = journal.epoch_word().load(Ordering::Acquire);
    if here > follower.epoch() {
        follower.on_promoted(here);
    }
    for mut frame in batch {
        if frame.epoch != hello.epoch {
            refusal = Some(Refusing::new(
                refused::Reason::Diverged,
                format!(
                    "malformed stream: a frame of epoch {} on a stream of epoch {}",
                    frame.epoch, hello.epoch
                ),
                follower.epoch(),
                follower.next_seq(),
            ));
            break;
        }
        if !follower.is_writer(stream.id) {
            // Checked before a resync touches anything; `on_stream_frame` refuses it below.
        } else {
            let announced = !frame.bytes.is_empty() && *resync_at == Some(frame.segment_first_seq);
            if announced {
                *resync_at = None;
            }
            if announced && sink.needs_restart_at(frame.segment_first_seq) {
                let to = Follow {
                    hello,
                    lineage: follower.lineage(),
                    dir,
                };
                match resync(sink, state, &frame, &to) {
                    Ok(()) => follower.on_resync(frame.epoch, frame.segment_first_seq),
                    Err(e) => {
                        refusal = Some(storage(e));
                        break;
                    }
                }
            }
        }
        let records = match frame_records(&frame.bytes) {
            Ok(records) => records,
            Err(e) => {
                refusal = Some(Refusing::new(
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
        let decision = follower.on_stream_frame(stream.id, &header, |s| sink.held_crc(s));
        if !matches!(decision, FollowerDecision::Refuse(_))
            && let Some(bytes) = &frame.producers
        {
            match ShippedTables::decode(&dir.join(REPLICA_PRODUCERS_FILE), bytes) {
                Ok(table) => tables.offer(table),
                // The records are good; a bad table is the primary's bug: the replica keeps
                // the table it has (a retry after a failover may then write a batch twice).
                Err(e) => {
                    tracing::error!(queue = %hello.queue, primary = %hello.primary, error = %e, "ignoring a producers' table the primary shipped")
                }
            }
        }
        if !matches!(decision, FollowerDecision::Refuse(_)) && !frame.consumer_cursors.is_empty() {
            cursors = Some(std::mem::take(&mut frame.consumer_cursors));
        }
        match decision {
            FollowerDecision::Append {
                move_aside_from: aside,
                ..
            } => {
                let to = Follow {
                    hello,
                    lineage: follower.lineage(),
                    dir,
                };
                if let Err(e) = append_frame(journal, sink, state, &frame, aside, &to) {
                    refusal = Some(applying(e));
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
                    && let Err(e) =
                        sink.apply(frame.segment_first_seq, frame.offset as usize, &frame.bytes)
                {
                    refusal = Some(applying(e));
                    break;
                }
                ack = Some((follower.epoch(), durable));
            }
            FollowerDecision::Refuse(r) => {
                refusal = Some(refusing(&r, follower));
                break;
            }
        }
    }
    // The newest table this replica now holds everything of, stored before the records are
    // acknowledged and under the replication lock (a promotion sees the records with it).
    // A stream that may no longer write (this node was promoted meanwhile) stores none.
    if follower.is_writer(stream.id)
        && let Some(table) = tables.take_ready(follower.next_seq())
        && let Err(e) = table.store(&dir.join(REPLICA_PRODUCERS_FILE))
    {
        refusal.get_or_insert(storage(e));
    }
    // The primary's consumer cursors, set once the records before them are applied, under the
    // same locks (a promotion sees them with the records), at most what this replica holds.
    if follower.is_writer(stream.id)
        && let Some(cursors) = cursors
    {
        consumer_cursors::follow(&journal.meta, &cursors, follower.next_seq(), &hello.queue);
    }
    drop(lock);
    if sync || refusal.is_some() {
        sink.sync().map_err(storage)?;
    }
    Ok((ack, refusal))
}

/// Appends one frame the follower accepted: first moves aside this replica's unreplicated suffix
/// if the frame's epoch began before it, and follows the frame's epoch.
fn append_frame(
    journal: &Arc<Journal>,
    sink: &mut ByteSink,
    state: &mut ReplicationState,
    frame: &proto::Frame,
    aside: Option<u64>,
    to: &Follow<'_>,
) -> Result<()> {
    if let Some(from) = aside {
        let moved = move_aside_from(journal, from, frame.epoch)?;
        tracing::warn!(queue = %to.hello.queue, from, moved = %moved.display(), "moved an unreplicated suffix aside");
        *sink = ByteSink::open(journal.clone())?;
        roll_back_producers(to.dir, from)?;
    }
    follow_epoch(
        state,
        frame.epoch,
        frame.epoch_start,
        &to.hello.primary,
        to.lineage,
        to.dir,
    )?;
    if !frame.bytes.is_empty() {
        sink.apply(frame.segment_first_seq, frame.offset as usize, &frame.bytes)?;
    }
    Ok(())
}

/// A full resync (the frame's `resync` flag): the primary holds nothing before the frame's
/// segment, which this replica needs. Its segments are dropped, oldest first: moved aside if
/// they may hold records an older primary wrote from the frame's epoch start on (this replica
/// saw an older epoch and holds records from there on), deleted otherwise (the primary's
/// retention deleted the same records). Then it follows the frame's epoch; the frame itself
/// creates the segment.
fn resync(
    sink: &mut ByteSink,
    state: &mut ReplicationState,
    frame: &proto::Frame,
    to: &Follow<'_>,
) -> Result<()> {
    let (hello, dir) = (to.hello, to.dir);
    let held = sink.next_seq();
    let aside = (frame.epoch > state.epoch && held > frame.epoch_start).then(|| {
        dir.join("moved-aside").join(format!(
            "epoch-{}-resync-at-{}",
            frame.epoch, frame.segment_first_seq
        ))
    });
    sink.restart_at(frame.segment_first_seq, aside.as_deref())?;
    if aside.is_some() {
        // Records from the frame's epoch start on were an older primary's: the tables forget
        // them.
        roll_back_producers(dir, frame.epoch_start)?;
    }
    tracing::warn!(
        queue = %hello.queue,
        primary = %hello.primary,
        held_up_to = held,
        restart_at = frame.segment_first_seq,
        moved_aside = ?aside,
        "full resync: the primary no longer holds the records this replica needs; its segments \
         are dropped and it starts again at the primary's oldest segment"
    );
    follow_epoch(
        state,
        frame.epoch,
        frame.epoch_start,
        &hello.primary,
        to.lineage,
        dir,
    )
}

/// Whom a replica follows while it applies a stream's frames: the stream's Hello, the epoch
/// history its follower keeps, and the queue's directory.
struct Follow<'a> {
    hello: &'a Hello,
    lineage: &'a Lineage,
    dir: &'a Path,
}

/// Makes this node a replica of `primary` in `epoch` (begun at `epoch_start`), its records
/// written by the epochs `lineage` names, if it is not one already; `store` writes
/// `replication.json` and publishes the policy words local producers read. This is the durable
/// record of the newest epoch this replica has seen, and of where its records came from.
fn follow_epoch(
    state: &mut ReplicationState,
    epoch: u64,
    epoch_start: u64,
    primary: &str,
    lineage: &Lineage,
    dir: &Path,
) -> Result<()> {
    if state.epoch == epoch && state.role == Role::Replica && state.epochs == *lineage {
        return Ok(());
    }
    *state = ReplicationState {
        role: Role::Replica,
        epoch,
        epoch_start,
        primary: Some(primary.to_owned()),
        epochs: lineage.clone(),
        ..ReplicationState::default()
    };
    state.store(dir)
}

/// Runs blocking journal work (file creation, msync) from the service: with `block_in_place` on
/// a multi-thread runtime (other tasks move to other workers), inline on a current-thread
/// runtime, where `block_in_place` would panic.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod fuzz_finds {
    use super::*;

    #[test]
    fn frames_that_disagree_are_refused_as_diverged_and_disk_failures_as_storage() {
        let corrupt = QueueError::Corrupt {
            path: "q/00000000000000000000.seg".into(),
            offset: 4096,
            reason: "record checksum mismatch".into(),
        };
        assert_eq!(applying(corrupt).reason, refused::Reason::Diverged);
        let full = QueueError::io(
            "allocating q/00000000000000000700.seg",
            std::io::Error::from_raw_os_error(28),
        );
        let refusal = applying(full);
        assert_eq!(refusal.reason, refused::Reason::Storage);
        assert!(refusal.detail.contains("allocating"), "{}", refusal.detail);
    }

    /// Found by the `replica_frames` fuzz target (fuzz/README.md, find 4): a Hello whose epoch
    /// history is out of order was refused with the reason code `UNSPECIFIED` (the protocol
    /// catch-all) instead of `INVALID_HELLO`, which the primary's log and metrics name.
    #[test]
    fn a_hello_with_an_out_of_order_history_is_refused_as_an_invalid_hello() {
        let hello = Hello {
            queue: "q".into(),
            primary: "p".into(),
            epoch: 7,
            epochs: [(6, 9), (7, 36), (4, 3)]
                .iter()
                .map(|&(epoch, start)| proto::EpochStart { epoch, start })
                .collect(),
            ..Hello::default()
        };
        let refusal = hello_lineage(&hello).expect_err("an out-of-order history is refused");
        assert_eq!(refusal.reason, refused::Reason::InvalidHello);
        assert!(
            refusal.detail.contains("not in order"),
            "{}",
            refusal.detail
        );
        let ordered = Hello {
            epochs: vec![proto::EpochStart {
                epoch: 7,
                start: 36,
            }],
            ..hello
        };
        assert!(hello_lineage(&ordered).is_ok());
    }

    /// Found by `replica_frames` (fuzz/README.md, find 5): a Hello of epoch 6 whose history was
    /// `[(0, 0)]` was accepted; the records acknowledged on that stream were then taken as
    /// written by epoch 0, and a second Hello of the same epoch 6 (begun at 13, no history) moved
    /// records 13..36, acknowledged in epoch 6, aside. A history must end with the Hello's epoch.
    #[test]
    fn a_hello_whose_history_does_not_end_with_its_epoch_is_refused() {
        let hello = Hello {
            queue: "q".into(),
            primary: "p".into(),
            epoch: 6,
            epoch_start: 1,
            epochs: vec![proto::EpochStart { epoch: 0, start: 0 }],
            ..Hello::default()
        };
        let refusal = hello_lineage(&hello).expect_err("a history without the Hello's epoch");
        assert_eq!(refusal.reason, refused::Reason::InvalidHello);
        assert!(
            refusal.detail.contains("does not end with its epoch 6"),
            "{}",
            refusal.detail
        );
        let own = Hello {
            epochs: vec![
                proto::EpochStart { epoch: 0, start: 0 },
                proto::EpochStart { epoch: 6, start: 1 },
            ],
            ..hello.clone()
        };
        assert!(hello_lineage(&own).is_ok());
        let none = Hello {
            epochs: Vec::new(),
            ..hello
        };
        assert!(
            hello_lineage(&none).is_ok(),
            "a primary that predates histories"
        );
    }
}

/// The replica's side of a stream without its transport, for the `cargo fuzz` targets in `fuzz/`
/// (re-exported by `crate::__fuzz`): the same opening, admission and batch application as
/// [`serve_stream`], one message at a time, synchronously. Not an API.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use super::*;

    /// A refusal as the stream would send it to the primary.
    #[derive(Debug, Clone)]
    pub struct DriverRefusal {
        /// The reason code of the `Refused` message.
        pub reason: refused::Reason,
        /// Its text.
        pub detail: String,
        /// The epoch and next sequence it reports.
        pub epoch: u64,
        /// The next sequence it reports.
        pub next_seq: u64,
    }

    impl From<Refusing> for DriverRefusal {
        fn from(r: Refusing) -> Self {
            DriverRefusal {
                reason: r.reason,
                detail: r.detail,
                epoch: r.epoch,
                next_seq: r.next_seq,
            }
        }
    }

    /// A replica service under a directory (every primary is a peer).
    #[derive(Debug)]
    pub struct ReplicaDriver {
        service: ReplicaService,
    }

    /// One stream the driver admitted.
    #[derive(Debug)]
    pub struct DriverStream {
        id: StreamId,
        hello: Hello,
        shared: Arc<SharedQueue>,
        resync_at: Option<u64>,
    }

    /// What the replica checks of a Hello before it touches the disk: the queue's name and
    /// parameters, and the order of the primary's epoch history. Returns the history's length.
    ///
    /// # Errors
    ///
    /// The refusal the stream would end with.
    pub fn check_hello(hello: &Hello) -> std::result::Result<usize, DriverRefusal> {
        hello_config(hello)?;
        Ok(hello_lineage(hello)?.entries().len())
    }

    impl ReplicaDriver {
        /// A service hosting replicas under `root`, as a restarted daemon sees it.
        #[must_use]
        pub fn new(root: PathBuf) -> Self {
            ReplicaDriver {
                service: ReplicaService::new(root),
            }
        }

        /// A stream's first message: opens the queue's replica and admits the Hello. Returns
        /// the stream and its `Subscribe` (epoch, next sequence).
        ///
        /// # Errors
        ///
        /// The refusal the stream would end with.
        pub fn hello(
            &self,
            hello: Hello,
        ) -> std::result::Result<(DriverStream, u64, u64), DriverRefusal> {
            let (journal, dir) = open_replica(&self.service.root, &hello)?;
            let shared = self.service.queue(&hello.queue);
            let (id, epoch, next_seq) = admit(&shared, journal, &dir, &hello)?;
            shared.writer.send_replace(Some(id));
            let stream = DriverStream {
                id,
                hello,
                shared,
                resync_at: None,
            };
            Ok((stream, epoch, next_seq))
        }

        /// A message after the Hello: a frame (applied and synced as a batch of one), a resync
        /// announcement, or anything else (a protocol error). Returns the acknowledgement sent
        /// (epoch, next sequence), if any.
        ///
        /// # Errors
        ///
        /// The refusal the stream would end with.
        pub fn message(
            &self,
            stream: &mut DriverStream,
            message: PrimaryMessage,
        ) -> std::result::Result<Option<(u64, u64)>, DriverRefusal> {
            match message.kind {
                Some(primary_message::Kind::Frame(f)) => {
                    let s = Stream {
                        id: stream.id,
                        hello: &stream.hello,
                        shared: &stream.shared,
                    };
                    let (ack, refusal) = apply_batch(&s, vec![f], &mut stream.resync_at, true)?;
                    match refusal {
                        Some(r) => Err(r.into()),
                        None => Ok(ack),
                    }
                }
                Some(primary_message::Kind::Resync(r)) => {
                    stream.resync_at = Some(r.segment_first_seq);
                    Ok(None)
                }
                _ => Err(protocol("unexpected message after Hello").into()),
            }
        }
    }
}

/// After a move-aside cut the journal back to `tail`: both producers' tables of the queue (the
/// node's own from its term as primary, and the one its primary shipped) are made to describe
/// the journal as it is now, or moved aside if they cannot (`producer_table::roll_back_to`).
fn roll_back_producers(dir: &Path, tail: u64) -> Result<()> {
    for file in [producer_table::PRODUCERS_FILE, REPLICA_PRODUCERS_FILE] {
        match producer_table::roll_back_to(dir, file, tail) {
            Ok(RollBack::Absent) => {}
            Ok(RollBack::Resolved(short)) => {
                if !short.is_empty() {
                    tracing::warn!(queue = %dir.display(), file, tail, put_back = ?short, "the producers' table forgets the batches moved aside");
                }
            }
            Ok(RollBack::MovedAside { to, reason }) => {
                tracing::warn!(queue = %dir.display(), file, tail, moved = %to.display(), %reason, "the producers' table was moved aside");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
