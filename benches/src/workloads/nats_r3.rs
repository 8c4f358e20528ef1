//! Peer: NATS JetStream R3, a replicated stream (`num_replicas` 3, file storage, the server's
//! default sync policy) on three `nats-server` processes clustered on loopback. The publisher
//! (in the driver, one current-thread runtime, connected to the first node) publishes with
//! acknowledgement: with a window of 1 each publish waits for its ack (latency = publish → ack);
//! with a larger window up to that many acks are outstanding (throughput only).

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::{Outcome, cut_note, stamp};
use crate::BoxResult;
use crate::clock::{deadline, now_ns};
use crate::cpu::{Cpu, CpuCost};
use crate::servers::{Server, start_nats_cluster};
use crate::stats::{Recorder, Throughput};

/// Nodes of the cluster, and copies of the stream.
pub const NODES: usize = 3;

/// A running three-node cluster with JetStream's meta leader elected.
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<Server>,
    streams: u64,
}

fn runtime() -> BoxResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl Cluster {
    /// Starts the cluster and waits (≤ 20 s) until a replicated stream can be created.
    pub fn start() -> Result<Self, String> {
        let servers = start_nats_cluster(NODES)?;
        let me = Cluster {
            servers,
            streams: 0,
        };
        let url = me.url();
        runtime()
            .and_then(|rt| {
                rt.block_on(async {
                    let js = jetstream::new(async_nats::connect(&url).await?);
                    create_stream(&js, "PROBE", "probe", Duration::from_secs(20)).await?;
                    let _ = js.delete_stream("PROBE").await;
                    BoxResult::Ok(())
                })
            })
            .map_err(|e| format!("JetStream R{NODES} does not answer: {e}"))?;
        Ok(me)
    }

    /// The servers' version line.
    pub fn version(&self) -> &str {
        self.servers.first().map_or("", |s| s.version.as_str())
    }

    fn url(&self) -> String {
        format!(
            "nats://127.0.0.1:{}",
            self.servers.first().map_or(0, |s| s.port)
        )
    }

    fn cpu(&self) -> Vec<Cpu> {
        self.servers
            .iter()
            .map(|s| Cpu::of_pid(s.pid()).unwrap_or_default())
            .collect()
    }

    /// Publishes `count` messages of `size` bytes (at most `secs` of publishing) to a new R3
    /// stream with at most `window` acknowledgements outstanding. CPU: the driver process
    /// (the publisher) and the three servers (`/proc/<pid>/stat`, clock ticks), from after one
    /// acknowledged warm-up message until [`super::repl_cost::SETTLE`] after the last ack.
    pub fn run(
        &mut self,
        size: usize,
        count: u64,
        secs: f64,
        window: usize,
    ) -> BoxResult<(Outcome, CpuCost)> {
        self.streams += 1;
        let name = format!("R3BENCH{}", self.streams);
        let subject = format!("r3.{}", self.streams);
        let url = self.url();
        let rt = runtime()?;
        let (rec, sent, start, last, servers0, driver0) = rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            create_stream(&js, &name, &subject, Duration::from_secs(10)).await?;
            let mut buf = vec![0xA5u8; size.max(16)];
            // Warm-up: the stream's leader and its followers are in place.
            js.publish(subject.clone(), buf.clone().into())
                .await?
                .await?;
            let servers0 = self.cpu();
            let driver0 = Cpu::of_process();
            let end = deadline(secs);
            let mut rec = Recorder::new();
            let mut acks = VecDeque::with_capacity(window);
            let start = now_ns();
            let mut sent = 0u64;
            while sent < count {
                let t = now_ns();
                stamp(&mut buf, t, sent);
                let ack = js.publish(subject.clone(), buf.clone().into()).await?;
                if window <= 1 {
                    ack.await?;
                    rec.record(now_ns() - t);
                } else {
                    acks.push_back(ack);
                    if acks.len() >= window
                        && let Some(a) = acks.pop_front()
                    {
                        a.await?;
                    }
                }
                sent += 1;
                if sent.is_multiple_of(64) && now_ns() > end {
                    break;
                }
            }
            for a in acks {
                a.await?;
            }
            let last = now_ns();
            BoxResult::Ok((rec, sent, start, last, servers0, driver0))
        })?;
        let driver = Cpu::of_process().since(driver0);
        std::thread::sleep(super::repl_cost::SETTLE);
        let mut parts = vec![("driver (publisher)".to_owned(), driver)];
        for (i, (now, before)) in self.cpu().iter().zip(&servers0).enumerate() {
            parts.push((format!("nats-server {i}"), now.since(*before)));
        }
        rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            // Some client/server version pairs cannot parse the reply; the cluster is discarded
            // at the end of the run anyway.
            let _ = js.delete_stream(&name).await;
            BoxResult::Ok(())
        })?;
        let cost = CpuCost {
            bytes: sent * size as u64,
            parts,
        };
        Ok((
            Outcome {
                latency: (window <= 1).then(|| rec.summary()),
                throughput: Some(Throughput::new(sent, size, last.saturating_sub(start))),
                sent,
                note: cut_note(sent, count),
                memory: None,
            },
            cost,
        ))
    }
}

/// Creates an R3 file stream, retrying for up to `patience` while the cluster elects leaders.
async fn create_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    patience: Duration,
) -> BoxResult<()> {
    let give_up = now_ns() + u64::try_from(patience.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let cfg = stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            storage: stream::StorageType::File,
            num_replicas: NODES,
            ..Default::default()
        };
        match js.create_stream(cfg).await {
            Ok(_) => return Ok(()),
            Err(e) if now_ns() > give_up => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
