//! Peer: NATS JetStream on loopback (file storage, the server's default fsync policy). The
//! producer publishes and keeps up to 256 acknowledgements outstanding; the consumer is a pull
//! consumer without acks. Each side runs its own single-threaded tokio runtime and connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use super::{
    Kind, Outcome, PacedLoad, ProduceLoad, ProducerRun, Spec, System, cut_note,
    produce_in_parallel, stamp, unstamp,
};
use crate::BoxResult;
use crate::clock::{Pacer, deadline, now_ns};
use crate::servers::{Server, start_nats};
use crate::stats::{Recorder, Throughput};

const WINDOW: usize = 256;

/// The NATS JetStream peer; owns its server.
#[derive(Debug)]
pub struct NatsJetStream {
    server: Server,
    n: u64,
}

fn runtime() -> BoxResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl NatsJetStream {
    /// Starts `nats-server -js` on a loopback port and checks that JetStream answers.
    pub fn start() -> Result<Self, String> {
        let server = start_nats()?;
        let me = Self { server, n: 0 };
        let url = me.url();
        runtime()
            .and_then(|rt| {
                rt.block_on(async {
                    let client = async_nats::connect(&url).await?;
                    let js = jetstream::new(client);
                    // JetStream may need a moment after the port opens: create and delete a
                    // probe stream, retrying for up to 5 s.
                    let mut tries = 0;
                    loop {
                        let probe = stream::Config {
                            name: "PROBE".into(),
                            subjects: vec!["probe".into()],
                            storage: stream::StorageType::Memory,
                            ..Default::default()
                        };
                        match js.create_stream(probe).await {
                            Ok(_) => {
                                let _ = js.delete_stream("PROBE").await;
                                return BoxResult::Ok(());
                            }
                            Err(e) if tries > 50 => return Err(e.into()),
                            Err(_) => {
                                tries += 1;
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                        }
                    }
                })
            })
            .map_err(|e| format!("JetStream does not answer: {e}"))?;
        Ok(me)
    }

    /// The server's version line.
    pub fn version(&self) -> &str {
        &self.server.version
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port)
    }

    /// Creates a new R1 file stream without consumers: (stream name, subject).
    fn new_stream(&mut self, rt: &tokio::runtime::Runtime) -> BoxResult<(String, String)> {
        self.n += 1;
        let name = format!("ACKED{}", self.n);
        let subject = format!("acked.{}", self.n);
        let url = self.url();
        rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await?;
            BoxResult::Ok(())
        })?;
        Ok((name, subject))
    }

    fn delete_stream(&self, rt: &tokio::runtime::Runtime, name: &str) {
        let url = self.url();
        // Best effort, as in `run`: the server is discarded at the end of the run anyway.
        let _ = rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            let _ = js.delete_stream(name).await;
            BoxResult::Ok(())
        });
    }

    /// Publish with acknowledgement, producer side only: `load.producers` publishers, each on
    /// its own connection with up to 256 acknowledgements outstanding, into one R1 file stream;
    /// timed until the last acknowledgement.
    pub fn publish_acked(&mut self, load: &ProduceLoad) -> BoxResult<Outcome> {
        let rt = runtime()?;
        let (name, subject) = self.new_stream(&rt)?;
        let url = self.url();
        let (share, end) = (load.share(), deadline(load.secs) + 1_000_000);
        let out = produce_in_parallel(
            load,
            |_| {
                let rt = runtime()?;
                // The context spawns a task: make it inside the runtime.
                let js = rt.block_on(async {
                    BoxResult::Ok(jetstream::new(async_nats::connect(&url).await?))
                })?;
                Ok((rt, js))
            },
            |(rt, js)| {
                rt.block_on(async {
                    let mut buf = vec![0xA5u8; load.size];
                    let mut acks = VecDeque::with_capacity(WINDOW);
                    let start = now_ns();
                    let mut sent = 0;
                    while sent < share {
                        stamp(&mut buf, now_ns(), sent);
                        acks.push_back(js.publish(subject.clone(), buf.clone().into()).await?);
                        if acks.len() >= WINDOW
                            && let Some(a) = acks.pop_front()
                        {
                            a.await?;
                        }
                        sent += 1;
                        if sent.is_multiple_of(256) && now_ns() > end {
                            break;
                        }
                    }
                    for a in acks {
                        a.await?;
                    }
                    BoxResult::Ok(ProducerRun {
                        sent,
                        start_ns: start,
                        last_ns: now_ns(),
                    })
                })
            },
        );
        self.delete_stream(&rt, &name);
        out
    }

    /// Publish → acknowledgement latency: one publisher, each publish waiting for its
    /// acknowledgement, paced at `load.rate`, into an R1 file stream.
    pub fn publish_ack_latency(&mut self, load: &PacedLoad) -> BoxResult<Outcome> {
        let rt = runtime()?;
        let (name, subject) = self.new_stream(&rt)?;
        let url = self.url();
        let out = rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            let pacer = Pacer::new(load.rate);
            let end = deadline(load.secs) + 1_000_000;
            let mut buf = vec![0xA5u8; load.size];
            let mut rec = Recorder::new();
            let mut sent = 0;
            while sent < load.count {
                let t = pacer.wait(sent);
                stamp(&mut buf, t, sent);
                js.publish(subject.clone(), buf.clone().into())
                    .await?
                    .await?;
                rec.record(now_ns().saturating_sub(t));
                sent += 1;
                if sent.is_multiple_of(64) && now_ns() > end {
                    break;
                }
            }
            BoxResult::Ok(Outcome {
                latency: Some(rec.summary()),
                sent,
                note: cut_note(sent, load.count),
                ..Outcome::default()
            })
        });
        self.delete_stream(&rt, &name);
        out
    }
}

impl System for NatsJetStream {
    fn name(&self) -> &'static str {
        "nats-jetstream"
    }

    fn supports(&self, kind: Kind) -> Result<(), String> {
        match kind {
            Kind::PingPong => Err("not measured: a stream is not a request/response path".into()),
            _ => Ok(()),
        }
    }

    fn run(&mut self, spec: &Spec) -> BoxResult<Outcome> {
        let (rate, latency) = match spec.kind {
            Kind::OneWay { rate } => (rate, true),
            _ => (0, false),
        };
        self.n += 1;
        let name = format!("BENCH{}", self.n);
        let subject = format!("bench.{}", self.n);
        let url = self.url();
        let spec = *spec;

        // Create the stream and the consumer up front.
        let rt = runtime()?;
        rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            let s = js
                .create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await?;
            s.create_consumer(consumer::pull::Config {
                durable_name: Some("reader".into()),
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await?;
            BoxResult::Ok(())
        })?;

        let done = Arc::new(AtomicU64::new(0));
        let reader = {
            let (url, name, done) = (url.clone(), name.clone(), done.clone());
            std::thread::spawn(move || -> BoxResult<(Recorder, u64, u64)> {
                let rt = runtime()?;
                rt.block_on(async move {
                    let js = jetstream::new(async_nats::connect(&url).await?);
                    let c: consumer::PullConsumer =
                        js.get_stream(&name).await?.get_consumer("reader").await?;
                    let mut msgs = c.messages().await?;
                    let mut rec = Recorder::new();
                    let mut n = 0u64;
                    let mut last_ns = now_ns();
                    let end = deadline(spec.secs_limit * 3.0 + 10.0);
                    loop {
                        let d = done.load(Ordering::Acquire);
                        if d != 0 && n + 1 >= d || now_ns() > end {
                            break;
                        }
                        let next = tokio::time::timeout(
                            std::time::Duration::from_millis(100),
                            msgs.next(),
                        )
                        .await;
                        match next {
                            Ok(Some(m)) => {
                                let m = m?;
                                last_ns = now_ns();
                                if latency {
                                    rec.record(last_ns.saturating_sub(unstamp(&m.payload).0));
                                }
                                n += 1;
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                    Ok((rec, n, last_ns))
                })
            })
        };

        let (start, sent) = rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            let pacer = Pacer::new(rate);
            let end = deadline(spec.secs_limit) + 1_000_000;
            let start = pacer.intended(0);
            let mut buf = vec![0xA5u8; spec.size];
            let mut acks = VecDeque::with_capacity(WINDOW);
            let mut i = 0;
            while i < spec.count {
                let ts = if latency { pacer.wait(i) } else { now_ns() };
                stamp(&mut buf, ts, i);
                acks.push_back(js.publish(subject.clone(), buf.clone().into()).await?);
                if acks.len() >= WINDOW
                    && let Some(a) = acks.pop_front()
                {
                    a.await?;
                }
                i += 1;
                if i.is_multiple_of(256) && now_ns() > end {
                    break;
                }
            }
            for a in acks {
                a.await?;
            }
            BoxResult::Ok((start, i))
        })?;
        done.store(sent + 1, Ordering::Release);
        let (rec, n, last_ns) = reader.join().map_err(|_| "nats reader panicked")??;
        rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await?);
            // Some client/server version pairs cannot parse the reply; the server is discarded
            // at the end of the run anyway.
            let _ = js.delete_stream(&name).await;
            BoxResult::Ok(())
        })?;
        if n != sent {
            return Err(format!("JetStream consumer got {n} of {sent}").into());
        }
        Ok(Outcome {
            latency: latency.then(|| rec.summary()),
            throughput: (!latency)
                .then(|| Throughput::new(sent, spec.size, last_ns.saturating_sub(start))),
            sent,
            note: cut_note(sent, spec.count),
            memory: None,
        })
    }
}
