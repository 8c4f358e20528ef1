//! Opening a stream to a replica (and opening it again after it broke).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Event;
use crate::replication::ReplicaAddr;
use crate::replication::grpc::proto::replication_client::ReplicationClient;
use crate::replication::grpc::proto::{
    Hello, PrimaryMessage, primary_message, refused, replica_message,
};
use crate::{QueueError, ReplicationError, Result};

/// Keeps a stream to one replica open, reconnecting with backoff.
/// The client side's TLS files, where the feature exists.
#[cfg(feature = "tls")]
pub(super) type ClientTls = Option<crate::replication::TlsFiles>;
#[cfg(not(feature = "tls"))]
pub(super) type ClientTls = ();

pub(super) async fn connection(
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
        if subscribed && began.elapsed() >= crate::replication::STREAM_KEEPALIVE {
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

pub(super) async fn connect_once(
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
            .http2_keep_alive_interval(crate::replication::STREAM_KEEPALIVE)
            .keep_alive_timeout(crate::replication::STREAM_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(Duration::from_secs(10)));
    // The files are read on every attempt: a rotated certificate is used by the next one.
    #[cfg(feature = "tls")]
    let endpoint = match tls.as_ref() {
        Some(files) => {
            let config = files
                .client_config(replica.identity())
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
