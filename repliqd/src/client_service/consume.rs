//! One pull consumer's stream: records after the durable cursor while the client has credits,
//! and acknowledgements that move the cursor. Records delivered and not acknowledged when the
//! stream ends are read again by the next stream (the cursor did not move past them).

use std::path::PathBuf;
use std::time::Duration;

use repliq::client::proto::{
    Acked, ConsumeOpen, ConsumeOpened, ConsumeReply, ConsumeRequest, Record, Records,
    consume_reply, consume_request,
};
use repliq::{RawQueue, StartAt};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{ClientService, Refusal};

type Out = mpsc::Sender<Result<ConsumeReply, Status>>;

/// The most records one `Records` message carries.
const MAX_BATCH: u64 = 256;
/// The most credits a client may hold.
const MAX_CREDITS: u64 = 1 << 20;
/// How long one read waits for a record before the stream looks at the client's messages.
const POLL: Duration = Duration::from_millis(100);

async fn send(out: &Out, kind: consume_reply::Kind) -> bool {
    out.send(Ok(ConsumeReply { kind: Some(kind) }))
        .await
        .is_ok()
}

async fn refuse(service: &ClientService, out: &Out, refusal: Refusal) {
    let refusal = service.finish(refusal);
    let _ = send(out, consume_reply::Kind::Refusal(refusal.0)).await;
}

/// Opens the queue's consumer for the stream (blocking file I/O).
fn open_queue(dir: &std::path::Path, open: &ConsumeOpen) -> Result<(RawQueue, u64), Refusal> {
    if !dir.join("queue.meta").exists() {
        return Err(Refusal::not_found(dir));
    }
    // The durable cursor lives on the primary: a replica's is not the one that counts.
    if let Some(redirect) = Refusal::redirect_if_replica(dir) {
        return Err(redirect);
    }
    let mut queue =
        RawQueue::open(dir, &open.consumer, StartAt::Earliest).map_err(|e| match e {
            repliq::QueueError::InvalidConfig(why) => Refusal::bad_request(why),
            other => Refusal::from_queue_error(dir, &other),
        })?;
    if queue.fingerprint() != open.fingerprint || queue.type_name() != open.message_type {
        return Err(Refusal::wrong_type(
            dir,
            queue.type_name(),
            queue.fingerprint(),
            &open.message_type,
            open.fingerprint,
        ));
    }
    let cursor = queue
        .cursor()
        .map_err(|e| Refusal::from_queue_error(dir, &e))?;
    Ok((queue, cursor))
}

/// Serves the stream until the client ends it, a refusal, or a newer stream of the name.
pub async fn serve(service: ClientService, mut inbound: Streaming<ConsumeRequest>, out: Out) {
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
    let dir = match service.queue_dir(&open.queue) {
        Ok(d) => d,
        Err(r) => return refuse(&service, &out, r).await,
    };
    let key = (dir.clone(), open.consumer.clone());
    let me = service
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock(&service).insert(key.clone(), me);
    let opening = {
        let (dir, open) = (dir.clone(), open.clone());
        tokio::task::spawn_blocking(move || open_queue(&dir, &open)).await
    };
    let (queue, cursor) = match opening {
        Ok(Ok(q)) => q,
        Ok(Err(r)) => return end(&service, &key, me, &out, Some(r)).await,
        Err(e) => {
            let r = Refusal::internal(format!("opening the consumer: {e}"));
            return end(&service, &key, me, &out, Some(r)).await;
        }
    };
    let opened = ConsumeOpened {
        cursor,
        node: service.node.clone(),
    };
    if !send(&out, consume_reply::Kind::Opened(opened)).await {
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
    let outcome = deliver(&service, &key, me, &open, queue, &mut commands, &out).await;
    reader.abort();
    end(&service, &key, me, &out, outcome.err()).await;
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
        let mut sessions = lock(service);
        if sessions.get(key) == Some(&me) {
            sessions.remove(key);
        }
    }
    if let Some(r) = refusal {
        refuse(service, out, r).await;
    }
}

fn lock(
    service: &ClientService,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<(PathBuf, String), u64>> {
    service.sessions.lock().unwrap_or_else(|p| p.into_inner())
}

/// The delivery loop. `Ok` when the client ended the stream.
async fn deliver(
    service: &ClientService,
    key: &(PathBuf, String),
    me: u64,
    open: &ConsumeOpen,
    queue: RawQueue,
    commands: &mut mpsc::Receiver<ConsumeRequest>,
    out: &Out,
) -> Result<(), Refusal> {
    let mut queue = Some(queue);
    let mut credits: u64 = 0;
    loop {
        if lock(service).get(key) != Some(&me) {
            return Err(Refusal::superseded(&open.queue, &open.consumer));
        }
        // The client's messages first (all that are waiting; one at least when out of credits).
        loop {
            let command = if credits == 0 {
                match commands.recv().await {
                    Some(c) => c,
                    None => return Ok(()),
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            };
            if lock(service).get(key) != Some(&me) {
                return Err(Refusal::superseded(&open.queue, &open.consumer));
            }
            match command.kind {
                Some(consume_request::Kind::Fetch(f)) => {
                    credits = (credits + u64::from(f.max_messages)).min(MAX_CREDITS);
                }
                Some(consume_request::Kind::Ack(a)) => {
                    let Some(q) = queue.as_mut() else {
                        return Err(Refusal::internal("the consumer's queue handle was lost"));
                    };
                    let next = a.up_to.saturating_add(1);
                    q.commit(next).map_err(|e| match e {
                        repliq::QueueError::InvalidConfig(why) => Refusal::bad_request(why),
                        other => Refusal::from_queue_error(&key.0, &other),
                    })?;
                    let cursor = q
                        .cursor()
                        .map_err(|e| Refusal::from_queue_error(&key.0, &e))?;
                    if !send(out, consume_reply::Kind::Acked(Acked { cursor })).await {
                        return Ok(());
                    }
                }
                _ => {
                    return Err(Refusal::bad_request(
                        "a Consume stream sends `open` only once",
                    ));
                }
            }
            if credits > 0 && commands.is_empty() {
                break;
            }
        }
        let Some(mut q) = queue.take() else {
            return Err(Refusal::internal("the consumer's queue handle was lost"));
        };
        let max = usize::try_from(credits.min(MAX_BATCH)).unwrap_or(1);
        let (q, read) = tokio::task::spawn_blocking(move || {
            let read = (|| {
                let mut records = Vec::new();
                if q.wait(POLL)? {
                    q.read_batch(max, |seq, payload| {
                        records.push(Record {
                            seq,
                            payload: bytes::Bytes::copy_from_slice(payload),
                        });
                    })?;
                }
                Ok::<_, repliq::QueueError>(records)
            })();
            (q, read)
        })
        .await
        .map_err(|e| Refusal::internal(format!("reading the queue: {e}")))?;
        queue = Some(q);
        let records = read.map_err(|e| Refusal::from_queue_error(&key.0, &e))?;
        if !records.is_empty() {
            credits -= records.len() as u64;
            if !send(out, consume_reply::Kind::Records(Records { records })).await {
                return Ok(());
            }
        }
    }
}
