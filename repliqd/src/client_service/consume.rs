//! One pull consumer's stream: records after the durable cursor while the client has credits,
//! acknowledgements (in any order) that move the cursor past a contiguous prefix of done
//! records, negative acknowledgements and `ack_wait` expiries that deliver a record again, and
//! `max_deliver` that moves a record to the dead-letter queue instead.
//!
//! The consumer's state ([`Consumer`]: its queue handle and its [`Inflight`] deliveries) lives
//! in the service, one per (queue, consumer name), and outlives a stream: the next stream of
//! the name delivers again what the previous one left unacknowledged, with its delivery count.
//! Only one stream holds it at a time (a newer stream supersedes the older one and waits for
//! it to let go). After a restart of the daemon the state is rebuilt from the durable cursor
//! and the dead-letter queue: the records after the cursor are delivered again, except those
//! already dead-lettered (at-least-once).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use repliq::client::proto::{
    Acked, ConsumeOpen, ConsumeOpened, ConsumeReply, ConsumeRequest, FetchDone, Heartbeat, Record,
    Records, consume_reply, consume_request,
};
use repliq::dead_letter::DeadLetters;
use repliq::{QueueError, RawQueue, StartAt};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::authorize::Caller;
use super::credits::{Budget, Credits, MAX_CREDITS};
use super::inflight::{Inflight, NotDelivered};
use super::{ClientService, Refusal, dlq};
use crate::config::ClientRight;

type Out = mpsc::Sender<Result<ConsumeReply, Status>>;

/// The most records one `Records` message carries.
const MAX_BATCH: u64 = 256;
/// How long one read waits for a record before the stream looks at the client's messages.
const POLL: Duration = Duration::from_millis(100);
/// `ack_wait` when the client leaves it 0 (NATS JetStream's default).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// The longest `ack_wait` and nack delay.
const MAX_ACK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// `max_deliver` when the client leaves it 0.
pub const DEFAULT_MAX_DELIVER: u32 = 10;
/// `max_ack_pending` when the client leaves it 0 (NATS JetStream's default).
pub const DEFAULT_MAX_ACK_PENDING: u32 = 1000;

/// One durable consumer's state, kept by the service between streams.
#[derive(Debug)]
pub struct Consumer {
    queue: RawQueue,
    inflight: Inflight,
    /// The dead-letter queue, opened on first use.
    letters: Option<(PathBuf, DeadLetters)>,
}

/// The slot of one (queue directory, consumer name): `None` until a stream builds the state,
/// and again after a stream failed in a way that may have left the state wrong.
pub type Slot = Arc<tokio::sync::Mutex<Option<Consumer>>>;

/// A stream's consumer settings, defaults filled in.
#[derive(Debug, Clone)]
struct Settings {
    queue: String,
    consumer: String,
    ack_wait: Duration,
    max_deliver: u32,
    dead_letter_queue: String,
    dead_letter_dir: PathBuf,
    max_ack_pending: usize,
}

impl Settings {
    fn of(service: &ClientService, open: &ConsumeOpen) -> Result<Settings, Refusal> {
        let ack_wait = match open.ack_wait_ms {
            0 => DEFAULT_ACK_WAIT,
            ms => Duration::from_millis(ms),
        };
        if ack_wait > MAX_ACK_WAIT {
            return Err(Refusal::bad_request(format!(
                "ack_wait_ms {} of consumer {:?}: at most {} (a day)",
                open.ack_wait_ms,
                open.consumer,
                MAX_ACK_WAIT.as_millis()
            )));
        }
        let dead_letter_queue = if open.dead_letter_queue.is_empty() {
            dlq::default_name(&open.queue)
        } else {
            open.dead_letter_queue.clone()
        };
        if dead_letter_queue == open.queue {
            return Err(Refusal::bad_request(format!(
                "consumer {:?} of {:?}: the dead-letter queue must be another queue",
                open.consumer, open.queue
            )));
        }
        let dead_letter_dir = service.queue_dir(&dead_letter_queue)?;
        let max_ack_pending = match open.max_ack_pending {
            0 => DEFAULT_MAX_ACK_PENDING,
            n => n,
        };
        Ok(Settings {
            queue: open.queue.clone(),
            consumer: open.consumer.clone(),
            ack_wait,
            max_deliver: match open.max_deliver {
                0 => DEFAULT_MAX_DELIVER,
                n => n,
            },
            dead_letter_queue,
            dead_letter_dir,
            max_ack_pending: usize::try_from(max_ack_pending)
                .unwrap_or(usize::MAX)
                .min(usize::try_from(MAX_CREDITS).unwrap_or(usize::MAX)),
        })
    }
}

async fn send(out: &Out, kind: consume_reply::Kind) -> bool {
    out.send(Ok(ConsumeReply { kind: Some(kind) }))
        .await
        .is_ok()
}

async fn refuse(service: &ClientService, out: &Out, refusal: Refusal) {
    let refusal = service.finish(refusal);
    let _ = send(out, consume_reply::Kind::Refusal(refusal.0)).await;
}

fn queue_refusal(dir: &Path, e: &QueueError) -> Refusal {
    match e {
        QueueError::InvalidConfig(why) => Refusal::bad_request(why.clone()),
        other => Refusal::from_queue_error(dir, other),
    }
}

/// Checks the queue and the client's type, and leaves the consumer's state in `state`: the one
/// there if it is still in step with the durable cursor, else one rebuilt from the cursor and
/// the dead-letter queue (blocking file I/O). A client refused for its type or settings leaves
/// the state as it was (the next stream of the name keeps the deliveries in flight).
fn open_consumer(
    dir: &Path,
    open: &ConsumeOpen,
    settings: &Settings,
    state: &mut Option<Consumer>,
) -> Result<(), Refusal> {
    if !dir.join("queue.meta").exists() {
        *state = None;
        return Err(Refusal::not_found(dir));
    }
    // The durable cursor lives on the primary: a replica's is not the one that counts.
    if let Some(redirect) = Refusal::redirect_if_replica(dir) {
        *state = None;
        return Err(redirect);
    }
    if let Some(c) = state.as_mut() {
        check_type(dir, &c.queue, open)?;
        if c.queue.cursor().ok() == Some(c.inflight.cursor()) {
            return Ok(());
        }
    }
    let mut queue = RawQueue::open(dir, &open.consumer, StartAt::Earliest)
        .map_err(|e| queue_refusal(dir, &e))?;
    check_type(dir, &queue, open)?;
    let cursor = queue.cursor().map_err(|e| queue_refusal(dir, &e))?;
    let dead = dlq::dead_lettered(
        &settings.dead_letter_dir,
        &open.queue,
        &open.consumer,
        cursor,
    )
    .map_err(|e| queue_refusal(&settings.dead_letter_dir, &e))?;
    *state = Some(Consumer {
        queue,
        inflight: Inflight::new(cursor, dead),
        letters: None,
    });
    Ok(())
}

/// The refusal of a client whose type is not the queue's, read from the queue's files without
/// opening a consumer; `None` if the types match or the queue cannot be read (the opening that
/// follows says why).
fn type_mismatch(dir: &Path, open: &ConsumeOpen) -> Option<Refusal> {
    let info = repliq::inspect(dir).ok()?;
    let fingerprint = u64::from_str_radix(info.fingerprint.trim_start_matches("0x"), 16).ok()?;
    (fingerprint != open.fingerprint || info.type_name != open.message_type).then(|| {
        Refusal::wrong_type(
            dir,
            &info.type_name,
            fingerprint,
            &open.message_type,
            open.fingerprint,
        )
    })
}

fn check_type(dir: &Path, queue: &RawQueue, open: &ConsumeOpen) -> Result<(), Refusal> {
    if queue.fingerprint() != open.fingerprint || queue.type_name() != open.message_type {
        return Err(Refusal::wrong_type(
            dir,
            queue.type_name(),
            queue.fingerprint(),
            &open.message_type,
            open.fingerprint,
        ));
    }
    Ok(())
}

/// Serves the stream until the client ends it, a refusal, or a newer stream of the name.
pub async fn serve(
    service: ClientService,
    caller: Caller,
    mut inbound: Streaming<ConsumeRequest>,
    out: Out,
) {
    let open = match inbound.message().await {
        Ok(Some(ConsumeRequest {
            kind: Some(consume_request::Kind::Open(open)),
        })) => open,
        Ok(_) => {
            let r = Refusal::bad_request("the first message of a Consume stream must be `open`");
            return refuse(&service, &out, r).await;
        }
        Err(_) => return,
    };
    let (dir, settings) = match service
        .authorize(&caller, &open.queue, ClientRight::Read)
        .and_then(|()| service.queue_dir(&open.queue))
        .and_then(|d| Ok((d, Settings::of(&service, &open)?)))
        .and_then(|(d, settings)| {
            // A dead-letter queue the consumer names is a queue the node writes for it: the
            // caller needs `write` there. The default one (`<queue>.dlq`) comes with `read`.
            if !open.dead_letter_queue.is_empty() {
                service.authorize(&caller, &settings.dead_letter_queue, ClientRight::Write)?;
            }
            Ok((d, settings))
        }) {
        Ok(x) => x,
        Err(r) => return refuse(&service, &out, r).await,
    };
    let stream_span = tracing::Span::current();
    stream_span.record("queue", open.queue.as_str());
    stream_span.record("consumer", open.consumer.as_str());
    // A client of another type is refused before it supersedes the name's stream (which would
    // otherwise end a legitimate consumer for nothing).
    let precheck = {
        let (dir, open) = (dir.clone(), open.clone());
        tokio::task::spawn_blocking(move || type_mismatch(&dir, &open)).await
    };
    if let Ok(Some(r)) = precheck {
        return refuse(&service, &out, r).await;
    }
    let key = (dir.clone(), open.consumer.clone());
    let me = service
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sessions(&service).insert(key.clone(), me);
    // Waits for an older stream of the name to let go of the state (it sees it is superseded).
    let slot = service.consumer_slot(&key);
    let mut guard = slot.lock().await;
    if sessions(&service).get(&key) != Some(&me) {
        let r = Refusal::superseded(&open.queue, &open.consumer);
        return end(&service, &key, me, &out, Some(r)).await;
    }
    let opening = {
        let (dir, open, settings, mut state) =
            (dir.clone(), open.clone(), settings.clone(), guard.take());
        tokio::task::spawn_blocking(move || {
            let r = open_consumer(&dir, &open, &settings, &mut state);
            (state, r)
        })
        .await
    };
    let consumer = match opening {
        Ok((state, Ok(()))) => state,
        Ok((state, Err(r))) => {
            *guard = state;
            drop(guard);
            return end(&service, &key, me, &out, Some(r)).await;
        }
        Err(e) => {
            let r = Refusal::internal(format!("opening the consumer: {e}"));
            return end(&service, &key, me, &out, Some(r)).await;
        }
    };
    let Some(consumer) = consumer else {
        let r = Refusal::internal("opening the consumer: no state");
        return end(&service, &key, me, &out, Some(r)).await;
    };
    let opened = ConsumeOpened {
        cursor: consumer.inflight.cursor(),
        node: service.node.clone(),
        ack_wait_ms: u64::try_from(settings.ack_wait.as_millis()).unwrap_or(u64::MAX),
        max_deliver: settings.max_deliver,
        dead_letter_queue: settings.dead_letter_queue.clone(),
        max_ack_pending: u32::try_from(settings.max_ack_pending).unwrap_or(u32::MAX),
    };
    *guard = Some(consumer);
    if !send(&out, consume_reply::Kind::Opened(opened)).await {
        release(&mut guard);
        return end(&service, &key, me, &out, None).await;
    }
    // The client's messages, read by their own task so reads and acknowledgements interleave.
    let (cmd_tx, mut commands) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = inbound.message().await {
            if cmd_tx.send(m).await.is_err() {
                break;
            }
        }
    });
    let stream = Stream {
        service: &service,
        key: &key,
        me,
        settings: &settings,
        out: &out,
    };
    let outcome = stream.deliver(&mut guard, &mut commands).await;
    reader.abort();
    match &outcome {
        // The state may be wrong after a failure (a failed dead-letter write, a cursor moved
        // by another handle): the next stream rebuilds it from the durable cursor.
        Err(r) if r.is_internal() => *guard = None,
        _ => release(&mut guard),
    }
    drop(guard);
    end(&service, &key, me, &out, outcome.err()).await;
}

/// The stream lets go of the consumer: what it left unacknowledged is for the next stream.
fn release(guard: &mut Option<Consumer>) {
    if let Some(c) = guard.as_mut() {
        c.inflight.release(Instant::now());
    }
}

/// Sends `refusal` (if any) and forgets the session if it is still the newest of its name.
async fn end(
    service: &ClientService,
    key: &(PathBuf, String),
    me: u64,
    out: &Out,
    refusal: Option<Refusal>,
) {
    {
        let mut sessions = sessions(service);
        if sessions.get(key) == Some(&me) {
            sessions.remove(key);
        }
    }
    if let Some(r) = refusal {
        refuse(service, out, r).await;
    }
}

fn sessions(
    service: &ClientService,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<(PathBuf, String), u64>> {
    service.sessions.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one blocking step did.
#[derive(Debug, Default)]
struct Step {
    records: Vec<Record>,
    redelivered: u64,
    dead_lettered: u64,
    /// The step waited for new records (so the stream need not wait again).
    waited: bool,
}

/// The parts of a stream the delivery loop needs.
struct Stream<'a> {
    service: &'a ClientService,
    key: &'a (PathBuf, String),
    me: u64,
    settings: &'a Settings,
    out: &'a Out,
}

impl Stream<'_> {
    fn superseded(&self) -> Option<Refusal> {
        (sessions(self.service).get(self.key) != Some(&self.me))
            .then(|| Refusal::superseded(&self.settings.queue, &self.settings.consumer))
    }

    /// Sends `kind`, giving up when the client is gone or a newer stream took over while the
    /// client was not reading. `Ok(false)`: the client is gone.
    async fn send(&self, kind: consume_reply::Kind) -> Result<bool, Refusal> {
        let sending = send(self.out, kind);
        tokio::pin!(sending);
        loop {
            tokio::select! {
                sent = &mut sending => return Ok(sent),
                () = tokio::time::sleep(POLL) => {
                    if let Some(r) = self.superseded() {
                        return Err(r);
                    }
                }
            }
        }
    }

    /// The delivery loop. `Ok` when the client ended the stream.
    async fn deliver(
        &self,
        state: &mut Option<Consumer>,
        commands: &mut mpsc::Receiver<ConsumeRequest>,
    ) -> Result<(), Refusal> {
        let dir = &self.key.0;
        let mut credits = Credits::new(Instant::now());
        loop {
            if let Some(r) = self.superseded() {
                return Err(r);
            }
            // The client's messages first (all that are waiting).
            loop {
                match commands.try_recv() {
                    Ok(c) => {
                        if !self.handle(c, state, &mut credits).await? {
                            return Ok(());
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            // Requests that lapsed, and the heartbeat an idle stream owes the client.
            let now = Instant::now();
            for unused_messages in credits.expire(now) {
                if !self
                    .fetch_done(unused_messages, credits.left(), true)
                    .await?
                {
                    return Ok(());
                }
                credits.sent(now);
            }
            if credits.heartbeat_due(now) {
                let cursor = state.as_ref().map_or(0, |c| c.inflight.cursor());
                let beat = Heartbeat {
                    cursor,
                    credits: credits.left(),
                };
                if !self.send(consume_reply::Kind::Heartbeat(beat)).await? {
                    return Ok(());
                }
                credits.sent(now);
            }
            let Some(mut consumer) = state.take() else {
                return Err(Refusal::internal("the consumer's state was lost"));
            };
            let settings = self.settings.clone();
            let budget = credits.budget();
            let (consumer, step) = tokio::task::spawn_blocking(move || {
                let step = step(&mut consumer, &settings, budget);
                (consumer, step)
            })
            .await
            .map_err(|e| Refusal::internal(format!("reading the queue: {e}")))?;
            let next_due = consumer.inflight.next_due();
            *state = Some(consumer);
            let step = step.map_err(|e| match e {
                QueueError::Io { .. } | QueueError::Corrupt { .. } | QueueError::Other(_) => {
                    Refusal::from_queue_error(dir, &e)
                }
                other => Refusal::internal(format!(
                    "consumer {:?} of {}: {other}",
                    self.settings.consumer,
                    dir.display()
                )),
            })?;
            self.service.metrics.count(
                &self.settings.queue,
                &self.settings.consumer,
                step.redelivered,
                step.dead_lettered,
            );
            if !step.records.is_empty() {
                let ended = credits.charge(
                    step.records.iter().map(|r| r.payload.len() as u64),
                    Instant::now(),
                );
                let span = tracing::info_span!(
                    "client.fetch",
                    queue = %self.settings.queue, consumer = %self.settings.consumer,
                    records = step.records.len(),
                    first_seq = step.records.first().map_or(0, |r| r.seq),
                    last_seq = step.records.last().map_or(0, |r| r.seq),
                    redelivered = step.redelivered, dead_lettered = step.dead_lettered,
                );
                crate::telemetry::follow_remote_parent(&span, &credits.traceparent, None);
                let records = Records {
                    records: step.records,
                };
                let sent = self
                    .send(consume_reply::Kind::Records(records))
                    .instrument(span)
                    .await?;
                if !sent {
                    return Ok(());
                }
                for unused_messages in ended {
                    if !self
                        .fetch_done(unused_messages, credits.left(), false)
                        .await?
                    {
                        return Ok(());
                    }
                }
                continue;
            }
            if step.waited || step.dead_lettered > 0 {
                continue;
            }
            // Nothing to send now (no credits, `max_ack_pending` reached, nothing due): wait
            // for the client, the next expiry (a delivery's, a request's, a heartbeat), or a
            // look at the session.
            let wait = next_due
                .into_iter()
                .chain(credits.next_event())
                .min()
                .map_or(POLL, |due| {
                    due.saturating_duration_since(Instant::now()).min(POLL)
                });
            match tokio::time::timeout(wait, commands.recv()).await {
                Ok(Some(c)) => {
                    if !self.handle(c, state, &mut credits).await? {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(_) => {}
            }
        }
    }

    /// Tells the client that a request ended with `unused_messages` not sent.
    async fn fetch_done(
        &self,
        unused_messages: u64,
        credits: u64,
        expired: bool,
    ) -> Result<bool, Refusal> {
        let done = FetchDone {
            unused_messages,
            credits,
            expired,
        };
        self.send(consume_reply::Kind::FetchDone(done)).await
    }

    /// Handles one client message. `Ok(false)`: the client is gone.
    async fn handle(
        &self,
        command: ConsumeRequest,
        state: &mut Option<Consumer>,
        credits: &mut Credits,
    ) -> Result<bool, Refusal> {
        let Some(c) = state.as_mut() else {
            return Err(Refusal::internal("the consumer's state was lost"));
        };
        let not_delivered = |e: NotDelivered| {
            Refusal::bad_request(format!(
                "consumer {:?} of {:?}: record {} was not delivered (the next record to deliver \
                 is {})",
                self.settings.consumer, self.settings.queue, e.seq, e.next_read
            ))
        };
        match command.kind {
            Some(consume_request::Kind::Fetch(f)) => {
                credits.grant(&f, Instant::now());
                Ok(true)
            }
            Some(consume_request::Kind::Ack(a)) => {
                for seq in a.seqs {
                    c.inflight.ack(seq).map_err(not_delivered)?;
                }
                if let Some(up_to) = a.up_to {
                    c.inflight.ack_up_to(up_to).map_err(not_delivered)?;
                }
                let cursor = c.inflight.cursor();
                c.queue
                    .commit(cursor)
                    .map_err(|e| Refusal::internal(format!("{e}")))?;
                credits.sent(Instant::now());
                self.send(consume_reply::Kind::Acked(Acked { cursor }))
                    .await
            }
            Some(consume_request::Kind::Nack(n)) => {
                let delay = Duration::from_millis(n.delay_ms).min(MAX_ACK_WAIT);
                c.inflight
                    .nack(n.seq, Instant::now(), delay)
                    .map_err(not_delivered)?;
                Ok(true)
            }
            Some(consume_request::Kind::InProgress(p)) => {
                let now = Instant::now();
                for seq in p.seqs {
                    c.inflight
                        .in_progress(seq, now, self.settings.ack_wait)
                        .map_err(not_delivered)?;
                }
                Ok(true)
            }
            _ => Err(Refusal::bad_request(
                "a Consume stream sends `open` only once",
            )),
        }
    }
}

/// One round of blocking work: dead-letters the records delivered `max_deliver` times, moves
/// the cursor, and reads what the credits allow (redeliveries first, then new records; waits
/// up to [`POLL`] for new ones when there is nothing else to send).
fn step(c: &mut Consumer, s: &Settings, budget: Budget) -> Result<Step, QueueError> {
    let mut out = Step::default();
    let now = Instant::now();
    c.inflight.expire(now);
    for due in c.inflight.exhausted(s.max_deliver) {
        let mut body = None;
        c.queue.read_at(due.seq, |p| body = Some(p.to_vec()))?;
        // A record retention removed is gone: nothing to dead-letter.
        if let Some(body) = body {
            if !matches!(&c.letters, Some((dir, _)) if *dir == s.dead_letter_dir) {
                c.letters = Some((s.dead_letter_dir.clone(), dlq::open(&s.dead_letter_dir)?));
            }
            let reason = format!(
                "delivered {} times (max_deliver {}); the last delivery was {}",
                due.deliveries,
                s.max_deliver,
                due.cause.describe()
            );
            if let Some((_, letters)) = c.letters.as_mut() {
                dlq::write(letters, &s.queue, &s.consumer, due.seq, reason, &body)?;
            }
            out.dead_lettered += 1;
            tracing::warn!(queue = %s.queue, consumer = %s.consumer, seq = due.seq,
                deliveries = due.deliveries, dead_letter_queue = %s.dead_letter_queue,
                "dead-lettered");
        }
        c.inflight.done(due.seq);
    }
    c.queue.commit(c.inflight.cursor())?;
    let max = budget.messages.min(MAX_BATCH);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if max == 0 {
        return Ok(out);
    }
    // The bytes the batch may still carry; a record that does not fit goes only as the batch's
    // first (a record larger than any request's bytes is not stuck).
    let mut bytes_left = budget.bytes;
    let mut fits = |len: usize, first: bool| {
        let ok = first || bytes_left.is_none_or(|b| len as u64 <= b);
        if ok {
            bytes_left = bytes_left.map(|b| b.saturating_sub(len as u64));
        }
        ok
    };
    for due in c.inflight.ready(now, s.max_deliver, max) {
        let mut payload = None;
        c.queue.read_at(due.seq, |p| {
            payload = Some(bytes::Bytes::copy_from_slice(p));
        })?;
        match payload {
            Some(payload) if !fits(payload.len(), out.records.is_empty()) => {
                // Redeliveries go first: no new record passes one that did not fit.
                return Ok(out);
            }
            Some(payload) => {
                let delivery_count = c.inflight.delivered_again(due.seq, now, s.ack_wait);
                out.records.push(Record {
                    seq: due.seq,
                    payload,
                    delivery_count,
                });
                out.redelivered += 1;
            }
            None => c.inflight.done(due.seq),
        }
    }
    let room =
        (max - out.records.len()).min(s.max_ack_pending.saturating_sub(c.inflight.pending()));
    if room == 0 {
        c.queue.commit(c.inflight.cursor())?;
        return Ok(out);
    }
    if out.records.is_empty() && out.dead_lettered == 0 {
        out.waited = true;
        let wait = c
            .inflight
            .next_due()
            .map_or(POLL, |due| due.saturating_duration_since(now).min(POLL));
        if !c.queue.wait(wait)? {
            return Ok(out);
        }
    }
    let now = Instant::now();
    let (queue, inflight, records) = (&mut c.queue, &mut c.inflight, &mut out.records);
    queue.read_batch_while(room, |seq, payload| {
        if inflight.skip_if_done(seq) {
            return true;
        }
        if !fits(payload.len(), records.is_empty()) {
            return false;
        }
        inflight.delivered_first(seq, now, s.ack_wait);
        records.push(Record {
            seq,
            payload: bytes::Bytes::copy_from_slice(payload),
            delivery_count: 1,
        });
        true
    })?;
    // Records passed over (dead-lettered before a restart) may move the cursor.
    c.queue.commit(c.inflight.cursor())?;
    Ok(out)
}
