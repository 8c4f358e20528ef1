//! Baseline for replication: raw tonic streaming over loopback, with repliq's own replication
//! messages (`repliq.replication.v1`) but no journal on either side. The sink answers every
//! frame with an ack at once. What repliq's replication adds on top is journal reads, appends,
//! syncs and flow control.

use std::time::Duration;

use futures::StreamExt;
use repliq::replication::grpc::proto::{
    self, primary_message, replica_message, replication_client::ReplicationClient,
    replication_server::Replication,
};
use tokio_stream::wrappers::ReceiverStream;

use super::Outcome;
use crate::BoxResult;
use crate::child::{self, ChildCfg, ChildReport};
use crate::clock::{deadline, now_ns};
use crate::stats::{Recorder, Throughput};

/// Bytes per frame, as repliq's primary sends by default.
pub const FRAME: usize = 256 << 10;

/// Bytes the durable sink writes and syncs per frame: one page, as a replica's `msync` of a
/// small synchronous frame does.
pub const DURABLE_WRITE: usize = 4096;

/// Pages in the durable sink's file (written in a ring).
const DURABLE_PAGES: u64 = 256;

#[derive(Debug, Default)]
struct Sink {
    /// With a file: each frame is answered only after a [`DURABLE_WRITE`]-byte write to it and
    /// `fdatasync` (the floor of a synchronous replica's durable write).
    durable: Option<std::sync::Arc<std::fs::File>>,
}

#[tonic::async_trait]
impl Replication for Sink {
    type ReplicateStream = ReceiverStream<Result<proto::ReplicaMessage, tonic::Status>>;

    async fn replicate(
        &self,
        request: tonic::Request<tonic::Streaming<proto::PrimaryMessage>>,
    ) -> Result<tonic::Response<Self::ReplicateStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let durable = self.durable.clone();
        tokio::spawn(async move {
            let page = vec![0x5Au8; DURABLE_WRITE];
            let mut frames = 0u64;
            while let Some(Ok(m)) = inbound.next().await {
                // A repliq primary streaming to this sink (`repl_instructions`) opens with a
                // `Hello` and sends frames once subscribed: from sequence 0, at its epoch.
                if let Some(primary_message::Kind::Hello(h)) = &m.kind {
                    let subscribe = proto::ReplicaMessage {
                        kind: Some(replica_message::Kind::Subscribe(proto::Subscribe {
                            epoch: h.epoch,
                            next_seq: 0,
                        })),
                    };
                    if tx.send(Ok(subscribe)).await.is_err() {
                        break;
                    }
                    continue;
                }
                if let Some(primary_message::Kind::Frame(f)) = m.kind {
                    if let Some(file) = &durable {
                        use std::os::unix::fs::FileExt;
                        let at = (frames % DURABLE_PAGES) * DURABLE_WRITE as u64;
                        frames += 1;
                        // Inline on the sink's only task: nothing else runs here.
                        let synced = file.write_all_at(&page, at).and_then(|()| file.sync_data());
                        if synced.is_err() {
                            break;
                        }
                    }
                    let ack = proto::ReplicaMessage {
                        kind: Some(replica_message::Kind::Ack(proto::Ack {
                            epoch: f.epoch,
                            next_seq: f.first_seq + u64::from(f.record_count),
                        })),
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// Child: the acking sink on 127.0.0.1:`extra` until killed or out of time. With a file name
/// (`name`), each frame is acknowledged only after a durable 4 KiB write to that file.
pub fn child_sink(cfg: &ChildCfg) -> BoxResult<ChildReport> {
    let durable = if cfg.name.is_empty() {
        None
    } else {
        // Written in full and synced first: the ping-pong then measures the overwrite of
        // allocated blocks and its `fdatasync`, the cheapest durable write of a page.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&cfg.name)?;
        std::io::Write::write_all(
            &mut &file,
            &vec![0u8; DURABLE_WRITE * DURABLE_PAGES as usize],
        )?;
        file.sync_all()?;
        Some(std::sync::Arc::new(file))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let port = u16::try_from(cfg.extra)?;
    let limit = Duration::from_secs_f64(cfg.secs_limit);
    child::serve_cpu_queries();
    rt.block_on(serve_sink(port, durable, limit, child::ready))?;
    Ok(ChildReport::default())
}

/// Serves the acking sink on 127.0.0.1:`port` for `limit` (each frame acknowledged at once, or
/// after a durable write to `durable`); calls `ready` once it listens.
pub(crate) async fn serve_sink(
    port: u16,
    durable: Option<std::sync::Arc<std::fs::File>>,
    limit: Duration,
    ready: impl FnOnce(),
) -> BoxResult<()> {
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], port).into())?
        .with_nodelay(Some(true));
    ready();
    tonic::transport::Server::builder()
        .add_service(
            proto::replication_server::ReplicationServer::new(Sink { durable })
                .max_decoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(incoming, tokio::time::sleep(limit))
        .await?;
    Ok(())
}

fn frame(seq: u64, records: u32, bytes: Vec<u8>) -> proto::PrimaryMessage {
    proto::PrimaryMessage {
        kind: Some(primary_message::Kind::Frame(proto::Frame {
            epoch: 1,
            epoch_start: 0,
            segment_first_seq: 0,
            offset: 0,
            first_seq: seq,
            record_count: records,
            bytes: bytes.into(),
            producers: None,
            consumer_cursors: Vec::new(),
        })),
    }
}

/// Streams frames of `frame_bytes` to a sink process, at most `window` unacknowledged, until
/// `total` bytes or `secs`. With `window` 1 and one record per frame it is a ping-pong and the
/// latency is the round trip. Messages count `size`-byte records.
pub fn run(
    size: usize,
    frame_bytes: usize,
    window: u64,
    total: u64,
    secs: f64,
) -> BoxResult<Outcome> {
    Ok(run_with(size, frame_bytes, window, total, secs, None)?.0)
}

/// [`run`], and the CPU it took: the sending thread (`RUSAGE_THREAD`: the client runs on one
/// current-thread runtime, so every task of the connection runs on it) and the whole sink
/// process, from before the connection until the last ack (plus the same settling time as
/// the replication cost rows give the replica; see `repl_cost`).
pub fn run_cost(
    size: usize,
    frame_bytes: usize,
    window: u64,
    total: u64,
    secs: f64,
) -> BoxResult<(Outcome, crate::cpu::CpuCost)> {
    run_with(size, frame_bytes, window, total, secs, None)
}

/// [`run`] against a sink that writes [`DURABLE_WRITE`] bytes to a file in `dir` and
/// `fdatasync`s it before it acknowledges each frame: with window 1, the floor of a synchronous
/// replicated `enqueue` (a round trip plus the replica's durable write).
pub fn run_durable(size: usize, total: u64, secs: f64) -> BoxResult<Outcome> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("durable-sink");
    Ok(run_with(size, size, 1, total, secs, Some(&file))?.0)
}

fn run_with(
    size: usize,
    frame_bytes: usize,
    window: u64,
    total: u64,
    secs: f64,
    durable: Option<&std::path::Path>,
) -> BoxResult<(Outcome, crate::cpu::CpuCost)> {
    use crate::cpu::{Cpu, CpuCost};
    let port = crate::servers::free_port()?;
    let cfg = ChildCfg {
        name: durable.map(|p| p.display().to_string()).unwrap_or_default(),
        name2: String::new(),
        count: 0,
        size,
        cpu: None,
        latency: false,
        secs_limit: secs * 3.0 + 30.0,
        extra: u64::from(port),
        events: None,
        tls: None,
    };
    let mut proc = child::spawn("tonic-sink", &cfg)?;
    proc.wait_ready(Duration::from_secs(30))?;
    let records = (frame_bytes / size).max(1) as u32;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sink0 = proc.cpu(Duration::from_secs(10))?;
    let sender0 = Cpu::of_thread();
    let (rec, sent, ns) =
        rt.block_on(stream_frames(port, size, frame_bytes, window, total, secs))?;
    let sender = Cpu::of_thread().since(sender0);
    std::thread::sleep(crate::workloads::repl_cost::SETTLE);
    let sink = proc.cpu(Duration::from_secs(10))?.since(sink0);
    drop(proc);
    let messages = sent * u64::from(records);
    let cost = CpuCost {
        bytes: messages * size as u64,
        parts: vec![
            ("sender thread".into(), sender),
            ("sink process".into(), sink),
        ],
    };
    let outcome = Outcome {
        latency: (window == 1).then(|| rec.summary()),
        throughput: Some(Throughput::new(messages, size, ns)),
        sent: messages,
        note: Some(format!(
            "{sent} frames of {} records ({} KiB), window {window}",
            records,
            frame_bytes / 1024
        )),
        memory: None,
    };
    Ok((outcome, cost))
}

/// The client side of [`run`]: connects to the sink on 127.0.0.1:`port` and streams frames of
/// `frame_bytes` (`size`-byte records), at most `window` unacknowledged, until `total` bytes or
/// `secs`. Returns the round trips (window 1), the frames sent and the nanoseconds taken.
pub(crate) async fn stream_frames(
    port: u16,
    size: usize,
    frame_bytes: usize,
    window: u64,
    total: u64,
    secs: f64,
) -> BoxResult<(Recorder, u64, u64)> {
    let records = (frame_bytes / size).max(1) as u32;
    let frames = (total / frame_bytes as u64).max(1);
    let mut client = ReplicationClient::connect(format!("http://127.0.0.1:{port}"))
        .await?
        .max_encoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(window as usize + 1);
    let payload = vec![0xA5u8; frame_bytes];
    tx.send(frame(0, records, payload.clone())).await?;
    let mut acks = client
        .replicate(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let end = deadline(secs);
    let mut rec = Recorder::new();
    let start = now_ns();
    let (mut sent, mut acked) = (1u64, 0u64);
    let mut last_send = start;
    loop {
        while sent < frames && sent - acked < window && now_ns() < end {
            last_send = now_ns();
            tx.send(frame(sent * u64::from(records), records, payload.clone()))
                .await?;
            sent += 1;
        }
        if acked == sent {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), acks.message()).await {
            Ok(Ok(Some(_))) => {
                acked += 1;
                if window == 1 {
                    rec.record(now_ns() - last_send);
                }
            }
            Ok(Ok(None)) => return Err("the sink closed the stream".into()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("no ack within 10 s".into()),
        }
    }
    Ok((rec, sent, now_ns() - start))
}
