//! Redis Streams: [`RedisSink`] (`XADD` with the queue sequence as the entry ID) and
//! [`RedisSource`] (a consumer group: `XREADGROUP`, `XACK`, `XAUTOCLAIM`).
//!
//! * **Dedup key** (sink): entry ID `<seq>-1`. Redis refuses an ID not above the stream's last
//!   one, so a batch resent after a crash or a lost reply is not written twice; the sink checks
//!   with `XRANGE` that each refused ID is really there (or, with `maxlen`, trimmed away: older
//!   than the first entry), and dead-letters the
//!   message if it is not (the stream has newer entries from another writer). With
//!   `dedup: false` entries get `*` IDs and a resent batch is written again.
//! * **Connections**: the source's blocking `XREADGROUP` has a connection of its own, so it
//!   never stalls the `XACK`s (a blocking command on a multiplexed connection holds up every
//!   other command on it). A lost connection is reopened on the next attempt.
//! * **Restart** (source): the consumer first reads its own pending entries (delivered before
//!   a crash, never acknowledged), then periodically claims entries other consumers of the group
//!   left pending longer than `claim_idle_ms` (`XAUTOCLAIM`), then reads new ones.

use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use serde::{Deserialize, Serialize};

use crate::{ConnectError, Failure, Incoming, Outgoing, SinkTarget, SourceOrigin};

fn default_field() -> String {
    "data".into()
}
fn yes() -> bool {
    true
}
fn default_block_ms() -> u64 {
    1000
}
fn default_claim_idle_ms() -> u64 {
    30_000
}

/// `redis_sink:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://host:port/db` (or `rediss://`, `unix://`).
    pub url: String,
    /// The stream key.
    pub stream: String,
    /// The entry field holding the message (default `data`).
    #[serde(default = "default_field")]
    pub field: String,
    /// Entry IDs from the queue sequence (`<seq>-1`), so resends are refused (default true).
    /// The stream must then be written by this sink only.
    #[serde(default = "yes")]
    pub dedup: bool,
    /// Trims the stream to about this many entries (`MAXLEN ~`) on each write.
    #[serde(default)]
    pub maxlen: Option<u64>,
}

/// `redis_source:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The stream key (created with the group if missing).
    pub stream: String,
    /// The consumer group (created at the start of the stream if missing).
    pub group: String,
    /// This consumer's name in the group (default: the connector's name). Keep it stable
    /// across restarts: its pending entries are read again under it.
    #[serde(default)]
    pub consumer: Option<String>,
    /// The entry field holding the message (default `data`).
    #[serde(default = "default_field")]
    pub field: String,
    /// How long one `XREADGROUP` blocks, in milliseconds (default 1000).
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Entries pending this long at another consumer are claimed (default 30000 ms).
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
}

fn client(connector: &str, url: &str) -> Result<Client, ConnectError> {
    Client::open(url).map_err(|e| ConnectError::Config {
        connector: connector.to_owned(),
        key: "url".into(),
        reason: e.to_string(),
    })
}

async fn connect(client: &Client, response: Duration) -> Result<MultiplexedConnection, Failure> {
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(response);
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| Failure::Transient(format!("connecting: {e}")))
}

/// Errors that may heal: the connection, a server still loading, out of memory, busy scripts.
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.code(),
            Some(
                "LOADING"
                    | "BUSY"
                    | "TRYAGAIN"
                    | "OOM"
                    | "MASTERDOWN"
                    | "READONLY"
                    | "NOREPLICAS"
                    | "CLUSTERDOWN"
            )
        )
}

fn is_id_too_small(e: &RedisError) -> bool {
    e.to_string()
        .contains("equal or smaller than the target stream top item")
}

/// Queue → Redis stream.
#[derive(Debug)]
pub struct RedisSink {
    client: Client,
    cfg: RedisSinkConfig,
    conn: Option<MultiplexedConnection>,
}

impl RedisSink {
    /// A sink for connector `connector` (for error messages). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a malformed URL.
    pub fn new(connector: &str, cfg: RedisSinkConfig) -> Result<RedisSink, ConnectError> {
        Ok(RedisSink {
            client: client(connector, &cfg.url)?,
            cfg,
            conn: None,
        })
    }

    fn id(&self, seq: u64) -> String {
        if self.cfg.dedup {
            format!("{seq}-1")
        } else {
            "*".into()
        }
    }

    /// Whether the entry of `seq`, refused as not above the stream's top, is in the stream (or,
    /// with `maxlen`, was trimmed away, being older than the first entry).
    async fn holds(&self, conn: &mut MultiplexedConnection, seq: u64) -> Result<bool, RedisError> {
        let id = self.id(seq);
        let found: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.cfg.stream)
            .arg(&id)
            .arg(&id)
            .query_async(conn)
            .await?;
        if !found.ids.is_empty() {
            return Ok(true);
        }
        if self.cfg.maxlen.is_none() {
            // Nothing trims the stream: absent means never written.
            return Ok(false);
        }
        let first: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.cfg.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(first
            .ids
            .first()
            .and_then(|e| e.id.split('-').next()?.parse::<u64>().ok())
            .is_some_and(|first| seq < first))
    }
}

impl SinkTarget for RedisSink {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        let mut conn = match self.conn.clone() {
            Some(c) => c,
            None => {
                let c = connect(&self.client, Duration::from_secs(10)).await?;
                self.conn = Some(c.clone());
                c
            }
        };
        // One pipeline per batch: the commands reach the server in order and it runs them in
        // order; each has its own reply (a server error for one does not stop the others).
        let mut pipe = redis::pipe();
        for m in batch {
            let cmd = pipe.cmd("XADD").arg(&self.cfg.stream);
            if let Some(n) = self.cfg.maxlen {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg(self.id(m.seq))
                .arg(&self.cfg.field)
                .arg(&m.body[..]);
        }
        let replies: Vec<Result<Value, RedisError>> =
            match conn.req_packed_commands(&pipe, 0, batch.len()).await {
                Ok(values) if values.len() == batch.len() => values
                    .into_iter()
                    .map(|v| match v {
                        Value::ServerError(e) => Err(RedisError::from(e)),
                        v => Ok(v),
                    })
                    .collect(),
                Ok(values) => {
                    self.conn = None;
                    return Err(Failure::Transient(format!(
                        "{} replies to a pipeline of {}",
                        values.len(),
                        batch.len()
                    )));
                }
                Err(e) => {
                    self.conn = None;
                    return Err(Failure::Transient(e.to_string()));
                }
            };
        let mut duplicates = 0;
        for (i, reply) in replies.iter().enumerate() {
            let Err(e) = reply else { continue };
            if transient(e) {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.conn = None;
                }
                // A later entry written under a higher ID would make this one's ID unusable.
                if replies[i + 1..].iter().any(Result::is_ok) && self.cfg.dedup {
                    return Err(Failure::Rejected {
                        index: i,
                        reason: format!(
                            "{e}; later entries were written, so its ID can no longer be used"
                        ),
                    });
                }
                return Err(Failure::Transient(e.to_string()));
            }
            if self.cfg.dedup && is_id_too_small(e) {
                match self.holds(&mut conn, batch[i].seq).await {
                    Ok(true) => duplicates += 1,
                    Ok(false) => {
                        return Err(Failure::Rejected {
                            index: i,
                            reason: format!(
                                "stream {} has entries past ID {} that this sink did not write",
                                self.cfg.stream,
                                self.id(batch[i].seq)
                            ),
                        });
                    }
                    Err(e) => {
                        self.conn = None;
                        return Err(Failure::Transient(e.to_string()));
                    }
                }
                continue;
            }
            return Err(Failure::Rejected {
                index: i,
                reason: e.to_string(),
            });
        }
        Ok(duplicates)
    }
}

/// Redis stream (consumer group) → queue.
#[derive(Debug)]
pub struct RedisSource {
    client: Client,
    cfg: RedisSourceConfig,
    consumer: String,
    /// Dedicated to the blocking `XREADGROUP`.
    read: Option<MultiplexedConnection>,
    /// `XACK`, `XAUTOCLAIM`, `XGROUP`.
    cmd: Option<MultiplexedConnection>,
    /// Whether this consumer's own pending entries were read since (re)connecting.
    pending_done: bool,
    /// Where the next read of this consumer's own pending entries starts: `0` after
    /// (re)connecting, then past the last one returned (a batch returned but not yet
    /// acknowledged is still pending, and must not be returned twice).
    pending_from: String,
    next_claim: Instant,
    claim_from: String,
}

impl RedisSource {
    /// A source for connector `connector` (the default consumer name). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a malformed URL.
    pub fn new(connector: &str, cfg: RedisSourceConfig) -> Result<RedisSource, ConnectError> {
        Ok(RedisSource {
            client: client(connector, &cfg.url)?,
            consumer: cfg.consumer.clone().unwrap_or_else(|| connector.to_owned()),
            cfg,
            read: None,
            cmd: None,
            pending_done: false,
            pending_from: "0".into(),
            next_claim: Instant::now(),
            claim_from: "0-0".into(),
        })
    }

    async fn connections(
        &mut self,
    ) -> Result<(MultiplexedConnection, MultiplexedConnection), Failure> {
        if self.cmd.is_none() {
            let mut c = connect(&self.client, Duration::from_secs(10)).await?;
            let created: Result<Value, RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut c)
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(Failure::Transient(format!("XGROUP CREATE: {e}"))),
            }
            self.cmd = Some(c);
            self.pending_done = false;
            self.pending_from = "0".into();
        }
        if self.read.is_none() {
            let timeout = Duration::from_millis(self.cfg.block_ms) + Duration::from_secs(10);
            self.read = Some(connect(&self.client, timeout).await?);
            self.pending_done = false;
            self.pending_from = "0".into();
        }
        match (self.read.clone(), self.cmd.clone()) {
            (Some(r), Some(c)) => Ok((r, c)),
            _ => Err(Failure::Transient("not connected".into())),
        }
    }

    fn lost(&mut self, what: &str, e: &RedisError) -> Failure {
        self.read = None;
        self.cmd = None;
        Failure::Transient(format!("{what}: {e}"))
    }

    fn incoming(&self, entries: Vec<StreamId>) -> Vec<Incoming<String>> {
        entries
            .into_iter()
            .map(|e| {
                let body = match e.map.get(&self.cfg.field) {
                    Some(Value::BulkString(b)) => b.clone(),
                    Some(Value::SimpleString(s)) => s.clone().into_bytes(),
                    _ => Vec::new(),
                };
                Incoming {
                    token: e.id.clone(),
                    id: e.id,
                    body,
                }
            })
            .collect()
    }
}

fn entries(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default()
}

impl SourceOrigin for RedisSource {
    type Token = String;

    async fn fetch(&mut self, max: usize) -> Result<Vec<Incoming<String>>, Failure> {
        let (mut read, mut cmd) = self.connections().await?;
        if !self.pending_done {
            let own: Result<Option<StreamReadReply>, RedisError> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.cfg.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max)
                .arg("STREAMS")
                .arg(&self.cfg.stream)
                .arg(&self.pending_from)
                .query_async(&mut cmd)
                .await;
            let own = entries(own.map_err(|e| self.lost("XREADGROUP (own pending)", &e))?);
            if let Some(last) = own.last() {
                self.pending_from = last.id.clone();
                return Ok(self.incoming(own));
            }
            self.pending_done = true;
        }
        if Instant::now() >= self.next_claim {
            let claimed: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg(&self.consumer)
                .arg(self.cfg.claim_idle_ms)
                .arg(&self.claim_from)
                .arg("COUNT")
                .arg(max)
                .query_async(&mut cmd)
                .await;
            let claimed = claimed.map_err(|e| self.lost("XAUTOCLAIM", &e))?;
            self.claim_from = claimed.next_stream_id;
            if self.claim_from == "0-0" {
                // Went round the whole pending list: wait before the next sweep.
                self.next_claim =
                    Instant::now() + Duration::from_millis(self.cfg.claim_idle_ms / 2);
            }
            let mut got = claimed.claimed;
            got.retain(|e| !e.map.is_empty());
            if !got.is_empty() {
                return Ok(self.incoming(got));
            }
        }
        let new: Result<Option<StreamReadReply>, RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(self.cfg.block_ms)
            .arg("STREAMS")
            .arg(&self.cfg.stream)
            .arg(">")
            .query_async(&mut read)
            .await;
        let new = entries(new.map_err(|e| self.lost("XREADGROUP", &e))?);
        Ok(self.incoming(new))
    }

    async fn ack(&mut self, tokens: &[String]) -> Result<(), Failure> {
        let (_, mut cmd) = self.connections().await?;
        let mut xack = redis::cmd("XACK");
        xack.arg(&self.cfg.stream).arg(&self.cfg.group);
        for id in tokens {
            xack.arg(id);
        }
        let r: Result<Value, RedisError> = xack.query_async(&mut cmd).await;
        r.map(drop).map_err(|e| self.lost("XACK", &e))
    }
}
