//! One producer's stream: the open, then each batch through the queue's append thread.

use repliq::client::proto::{
    ProduceAck, ProduceOpened, ProduceReply, ProduceRequest, produce_reply, produce_request,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::appender::Job;
use super::authorize::Caller;
use super::{ClientService, Refusal};
use crate::config::ClientRight;

type Out = mpsc::Sender<Result<ProduceReply, Status>>;

/// The longest producer id (the producers' table keeps one entry per id).
const MAX_PRODUCER_ID: usize = 256;

async fn send(out: &Out, kind: produce_reply::Kind) -> bool {
    out.send(Ok(ProduceReply { kind: Some(kind) }))
        .await
        .is_ok()
}

async fn refuse(service: &ClientService, out: &Out, refusal: Refusal) {
    let refusal = service.finish(refusal);
    let _ = send(out, produce_reply::Kind::Refusal(refusal.0)).await;
}

/// Serves the stream until the client ends it or a refusal.
pub async fn serve(
    service: ClientService,
    caller: Caller,
    mut inbound: Streaming<ProduceRequest>,
    out: Out,
) {
    let open = match inbound.message().await {
        Ok(Some(ProduceRequest {
            kind: Some(produce_request::Kind::Open(open)),
        })) => open,
        Ok(_) => {
            let r = Refusal::bad_request("the first message of a Produce stream must be `open`");
            return refuse(&service, &out, r).await;
        }
        Err(_) => return,
    };
    if open.producer_id.is_empty() || open.producer_id.len() > MAX_PRODUCER_ID {
        let r = Refusal::bad_request(format!(
            "a producer id is 1 to {MAX_PRODUCER_ID} bytes, not {}",
            open.producer_id.len()
        ));
        return refuse(&service, &out, r).await;
    }
    let stream_span = tracing::Span::current();
    stream_span.record("queue", open.queue.as_str());
    stream_span.record("producer", open.producer_id.as_str());
    stream_span.record("producer_epoch", open.producer_epoch);
    let dir = match service
        .authorize(&caller, &open.queue, ClientRight::Write)
        .and_then(|()| service.queue_dir(&open.queue))
    {
        Ok(d) => d,
        Err(r) => return refuse(&service, &out, r).await,
    };
    let (reply, answer) = oneshot::channel();
    let job = Job::Open {
        producer: open.producer_id.clone(),
        epoch: open.producer_epoch,
        message_type: open.message_type.clone(),
        fingerprint: open.fingerprint,
        reply,
    };
    let next_seq = match submit(&service, &dir, job, answer).await {
        Ok(n) => n,
        Err(r) => return refuse(&service, &out, r).await,
    };
    let opened = ProduceOpened {
        next_seq,
        node: service.node.clone(),
    };
    if !send(&out, produce_reply::Kind::Opened(opened)).await {
        return;
    }
    loop {
        let batch = match inbound.message().await {
            Ok(Some(ProduceRequest {
                kind: Some(produce_request::Kind::Batch(b)),
            })) => b,
            Ok(Some(_)) => {
                let r = Refusal::bad_request("a Produce stream sends `open` only once");
                return refuse(&service, &out, r).await;
            }
            Ok(None) | Err(_) => return,
        };
        let count = u32::try_from(batch.records.len()).unwrap_or(u32::MAX);
        let first_seq = batch.first_seq;
        // One span per batch, from its arrival to its acknowledgement.
        let span = tracing::info_span!(
            "client.produce_batch",
            queue = %open.queue, producer = %open.producer_id, first_seq, count,
            duplicates = tracing::field::Empty, first_queue_seq = tracing::field::Empty,
            last_queue_seq = tracing::field::Empty, refused = tracing::field::Empty,
        );
        crate::telemetry::follow_remote_parent(&span, &batch.traceparent, None);
        let (reply, answer) = oneshot::channel();
        let job = Job::Batch {
            producer: open.producer_id.clone(),
            epoch: open.producer_epoch,
            first_seq,
            records: batch.records,
            reply,
        };
        let written = submit(&service, &dir, job, answer)
            .instrument(span.clone())
            .await;
        match written {
            Ok(written) => {
                let (first_queue_seq, last_queue_seq) = written.queue_seqs.unwrap_or((0, 0));
                span.record("duplicates", written.duplicates);
                if written.queue_seqs.is_some() {
                    span.record("first_queue_seq", first_queue_seq);
                    span.record("last_queue_seq", last_queue_seq);
                }
                drop(span);
                let ack = ProduceAck {
                    first_seq,
                    count,
                    duplicates: written.duplicates,
                    first_queue_seq,
                    last_queue_seq,
                };
                if !send(&out, produce_reply::Kind::Ack(ack)).await {
                    return;
                }
            }
            Err(r) => {
                span.record("refused", r.0.message.as_str());
                drop(span);
                return refuse(&service, &out, r).await;
            }
        }
    }
}

async fn submit<T>(
    service: &ClientService,
    dir: &std::path::Path,
    job: Job,
    answer: oneshot::Receiver<Result<T, Refusal>>,
) -> Result<T, Refusal> {
    service.appenders.submit(dir, job)?;
    answer
        .await
        .map_err(|_| Refusal::internal("the append thread dropped the request"))?
}
