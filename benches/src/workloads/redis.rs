//! Peer: Redis Streams on loopback. The producer `XADD`s each message (one round trip per
//! message when paced; pipelines of 128 when flat out), the consumer `XREAD BLOCK`s in batches
//! of up to 1000 on its own connection. The server runs without persistence (in memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value;

use super::{
    Kind, Outcome, PacedLoad, ProduceLoad, ProducerRun, Spec, System, cut_note,
    produce_in_parallel, stamp, unstamp,
};
use crate::BoxResult;
use crate::clock::{Pacer, deadline, now_ns};
use crate::servers::{Server, start_redis};
use crate::stats::{Recorder, Throughput};

const PIPELINE: u64 = 128;

/// The Redis Streams peer; owns its server.
#[derive(Debug)]
pub struct RedisStreams {
    server: Server,
    n: u64,
}

impl RedisStreams {
    /// Starts `redis-server` on a loopback port.
    pub fn start() -> Result<Self, String> {
        let server = start_redis()?;
        let me = Self { server, n: 0 };
        me.connect()
            .and_then(|mut c| Ok(redis::cmd("PING").query::<String>(&mut c)?))
            .map_err(|e| format!("redis-server does not answer PING: {e}"))?;
        Ok(me)
    }

    /// The server's version line.
    pub fn version(&self) -> &str {
        &self.server.version
    }

    fn connect(&self) -> BoxResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.server.port))?;
        Ok(client.get_connection()?)
    }

    fn new_key(&mut self) -> String {
        self.n += 1;
        format!("acked-{}-{}", std::process::id(), self.n)
    }

    /// `XADD`, producer side only: `load.producers` producers, each on its own connection
    /// sending pipelines of 128 and waiting for their replies, into one stream; timed until the
    /// last reply.
    pub fn xadd_acked(&mut self, load: &ProduceLoad) -> BoxResult<Outcome> {
        let key = self.new_key();
        let (share, end) = (load.share(), deadline(load.secs) + 1_000_000);
        let out = produce_in_parallel(
            load,
            |_| self.connect(),
            |mut conn| {
                let mut buf = vec![0xA5u8; load.size];
                let start = now_ns();
                let mut sent = 0;
                while sent < share {
                    let mut pipe = redis::pipe();
                    let batch = PIPELINE.min(share - sent);
                    for k in 0..batch {
                        stamp(&mut buf, now_ns(), sent + k);
                        pipe.cmd("XADD")
                            .arg(&key)
                            .arg("*")
                            .arg("d")
                            .arg(&buf[..])
                            .ignore();
                    }
                    pipe.query::<()>(&mut conn)?;
                    sent += batch;
                    if now_ns() > end {
                        break;
                    }
                }
                Ok(ProducerRun {
                    sent,
                    start_ns: start,
                    last_ns: now_ns(),
                })
            },
        );
        if let Ok(mut c) = self.connect() {
            let _ = redis::cmd("DEL").arg(&key).query::<Value>(&mut c);
        }
        out
    }

    /// `XADD` → reply latency: one producer, one `XADD` at a time, paced at `load.rate`.
    pub fn xadd_latency(&mut self, load: &PacedLoad) -> BoxResult<Outcome> {
        let key = self.new_key();
        let mut conn = self.connect()?;
        let pacer = Pacer::new(load.rate);
        let end = deadline(load.secs) + 1_000_000;
        let mut buf = vec![0xA5u8; load.size];
        let mut rec = Recorder::new();
        let mut sent = 0;
        while sent < load.count {
            let t = pacer.wait(sent);
            stamp(&mut buf, t, sent);
            redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("d")
                .arg(&buf[..])
                .query::<Value>(&mut conn)?;
            rec.record(now_ns().saturating_sub(t));
            sent += 1;
            if sent.is_multiple_of(64) && now_ns() > end {
                break;
            }
        }
        let _ = redis::cmd("DEL").arg(&key).query::<Value>(&mut conn);
        Ok(Outcome {
            latency: Some(rec.summary()),
            sent,
            note: cut_note(sent, load.count),
            ..Outcome::default()
        })
    }
}

/// Pulls the `d` field's bytes out of every entry of an `XREAD` reply; returns the last id.
fn entries(reply: &Value, mut each: impl FnMut(&[u8])) -> Option<Vec<u8>> {
    let mut last = None;
    // Reply: [[key, [[id, [field, value, ...]], ...]]] (RESP2) or a map in RESP3.
    let streams: Vec<&Value> = match reply {
        Value::Array(v) => v.iter().collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => return None,
    };
    for s in streams {
        let list = match s {
            Value::Array(kv) if kv.len() == 2 => &kv[1],
            other => other,
        };
        let Value::Array(items) = list else { continue };
        for item in items {
            let Value::Array(pair) = item else { continue };
            if let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (pair.first(), pair.get(1))
            {
                if let Some(Value::BulkString(data)) = fields.get(1) {
                    each(data);
                }
                last = Some(id.clone());
            }
        }
    }
    last
}

impl System for RedisStreams {
    fn name(&self) -> &'static str {
        "redis-streams"
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
        let key = format!("bench-{}-{}", std::process::id(), self.n);
        let mut prod = self.connect()?;
        let mut cons = self.connect()?;
        let done = Arc::new(AtomicU64::new(0));
        let spec = *spec;
        let reader = {
            let key = key.clone();
            let done = done.clone();
            std::thread::spawn(move || -> BoxResult<(Recorder, u64, u64)> {
                let mut rec = Recorder::new();
                let mut n = 0u64;
                let mut last_ns = now_ns();
                let mut last_id = b"0".to_vec();
                let end = deadline(spec.secs_limit * 3.0 + 10.0);
                loop {
                    let d = done.load(Ordering::Acquire);
                    if d != 0 && n + 1 >= d || now_ns() > end {
                        break;
                    }
                    let reply: Value = redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(100)
                        .arg("STREAMS")
                        .arg(&key)
                        .arg(&last_id[..])
                        .query(&mut cons)?;
                    let got = entries(&reply, |data| {
                        last_ns = now_ns();
                        if latency {
                            rec.record(last_ns.saturating_sub(unstamp(data).0));
                        }
                        n += 1;
                    });
                    if let Some(id) = got {
                        last_id = id;
                    }
                }
                Ok((rec, n, last_ns))
            })
        };
        let pacer = Pacer::new(rate);
        let end = deadline(spec.secs_limit) + 1_000_000;
        let start = pacer.intended(0);
        let mut buf = vec![0xA5u8; spec.size];
        let mut i = 0;
        if latency {
            while i < spec.count {
                let ts = pacer.wait(i);
                stamp(&mut buf, ts, i);
                redis::cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("d")
                    .arg(&buf[..])
                    .query::<Value>(&mut prod)?;
                i += 1;
                if i.is_multiple_of(256) && now_ns() > end {
                    break;
                }
            }
        } else {
            while i < spec.count {
                let mut pipe = redis::pipe();
                let batch = PIPELINE.min(spec.count - i);
                for k in 0..batch {
                    stamp(&mut buf, now_ns(), i + k);
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("*")
                        .arg("d")
                        .arg(&buf[..])
                        .ignore();
                }
                pipe.query::<()>(&mut prod)?;
                i += batch;
                if now_ns() > end {
                    break;
                }
            }
        }
        done.store(i + 1, Ordering::Release);
        let (rec, n, last_ns) = reader.join().map_err(|_| "redis reader panicked")??;
        let _ = redis::cmd("DEL").arg(&key).query::<Value>(&mut prod);
        if n != i {
            return Err(format!("redis consumer got {n} of {i}").into());
        }
        Ok(Outcome {
            latency: latency.then(|| rec.summary()),
            throughput: (!latency)
                .then(|| Throughput::new(i, spec.size, last_ns.saturating_sub(start))),
            sent: i,
            note: cut_note(i, spec.count),
            memory: None,
        })
    }
}
