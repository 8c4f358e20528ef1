//! Kafka (through `rskafka`, pure Rust, no compression codecs): [`KafkaSink`] (produce to one
//! topic partition, `acks = all`) and [`KafkaSource`] (consume one topic partition from an offset
//! stored in a file of the queue's directory).
//!
//! * **Acknowledgement** (sink): a produce returns once the partition leader answered, with
//!   `acks = -1` (all in-sync replicas; rskafka always asks for it, the strongest level Kafka has).
//! * **Dedup key** (sink): record key `<connector>-<seq>` and header `repliq-seq: <seq>` (decimal
//!   text). Kafka itself stores a resend again (this is not the idempotent producer); a consumer
//!   that must see each message once drops repeated keys.
//! * **Rejections** (sink): the broker refuses a whole produce request when one record of it is
//!   refused (`MESSAGE_TOO_LARGE`, `INVALID_RECORD`, ...); the sink then produces the batch's
//!   records one by one to find the refused one (the batch was not appended: Kafka appends a
//!   record batch whole or not at all), which is dead-lettered.
//! * **Reconnecting**: any transient failure drops the client; the next call builds a new one
//!   (metadata, partition leader) from `brokers`.
//! * **Offsets** (source): Kafka keeps no acknowledgement per message here; the source stores
//!   the next offset to read in `<queue>/connect.<name>.kafka-offset` (written to a temporary
//!   file, synced, renamed over it, directory synced) after each batch was enqueued. Killed
//!   before that, it reads the batch again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::ClientBuilder;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde::{Deserialize, Serialize};

use crate::{ConnectError, Failure, Incoming, Outgoing, SinkTarget, SourceOrigin};

/// The record header holding the queue sequence (decimal text).
pub const SEQ_HEADER: &str = "repliq-seq";

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_fetch_ms() -> u64 {
    1000
}
fn default_fetch_max_bytes() -> i32 {
    1 << 20
}

/// `kafka_sink:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The topic produced to (it must exist, or the brokers must create topics on first use).
    pub topic: String,
    /// The partition produced to (default 0): one partition keeps the queue's order.
    #[serde(default)]
    pub partition: i32,
    /// How long connecting or one produce may take before it counts as a transient failure
    /// and the client is built anew (default 10000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Where a source starts when it has no stored offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// The partition's first record still kept (default).
    #[default]
    Earliest,
    /// After the partition's last record: only what is produced from now on.
    Latest,
}

/// What a source does when its stored offset is out of the partition's range (retention or
/// deletion removed the records it had not read yet, or the topic was created anew).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaOutOfRange {
    /// Every fetch fails with an error naming the offsets and the offset file, logged and
    /// retried with backoff (default): nothing is skipped without an operator deciding so.
    #[default]
    Error,
    /// Go on from the partition's earliest offset, logged as an error with the offsets.
    Earliest,
}

/// `kafka_source:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The topic consumed.
    pub topic: String,
    /// The partition consumed (default 0).
    #[serde(default)]
    pub partition: i32,
    /// Where to start with no stored offset (default `earliest`).
    #[serde(default)]
    pub start: KafkaStart,
    /// Upper bound of one fetch's answer, in bytes (default 1 MiB; a larger record still comes,
    /// alone).
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: i32,
    /// How long one fetch waits for records on the broker (default 1000 ms).
    #[serde(default = "default_fetch_ms")]
    pub fetch_ms: u64,
    /// A stored offset out of the partition's range: `error` (default) or `earliest`.
    #[serde(default)]
    pub on_out_of_range: KafkaOutOfRange,
    /// How long connecting or one request may take beyond `fetch_ms` (default 10000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn bad(connector: &str, key: &str, reason: impl Into<String>) -> ConnectError {
    ConnectError::Config {
        connector: connector.to_owned(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The settings both directions share: non-empty `host:port` brokers, a topic name Kafka
/// accepts, a partition, a timeout.
fn check_common(
    connector: &str,
    brokers: &[String],
    topic: &str,
    partition: i32,
    timeout_ms: u64,
) -> Result<(), ConnectError> {
    if brokers.is_empty() {
        return Err(bad(connector, "brokers", "needs at least one host:port"));
    }
    for b in brokers {
        let port = b
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
            return Err(bad(connector, "brokers", format!("{b:?} is not host:port")));
        }
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) || topic == "." {
        return Err(bad(
            connector,
            "topic",
            format!("{topic:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ));
    }
    if partition < 0 {
        return Err(bad(
            connector,
            "partition",
            format!("{partition} is negative"),
        ));
    }
    if timeout_ms == 0 {
        return Err(bad(connector, "timeout_ms", "must be at least 1"));
    }
    Ok(())
}

/// Connects: bootstrap metadata, then the partition's leader. rskafka's own retries (connection
/// errors, leader elections) end after `timeout`, and so does the whole attempt.
async fn connect(
    connector: &str,
    brokers: &[String],
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Arc<PartitionClient>, Failure> {
    let attempt = async {
        let client = ClientBuilder::new(brokers.to_vec())
            .client_id(format!("repliq-{connector}"))
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
                deadline: Some(timeout),
            })
            .build()
            .await?;
        client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
    };
    match tokio::time::timeout(timeout + Duration::from_millis(500), attempt).await {
        Ok(Ok(p)) => Ok(Arc::new(p)),
        Ok(Err(e)) => Err(Failure::Transient(format!(
            "connecting to {brokers:?} for {topic}/{partition}: {e}"
        ))),
        Err(_) => Err(Failure::Transient(format!(
            "connecting to {brokers:?} for {topic}/{partition}: timed out after {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The broker's error code, if the failure is one.
/// The client in `slot`, or a new one from `connect` kept there (a failure drops it from the
/// slot, so the next call connects again).
async fn cached<F: Future<Output = Result<Arc<PartitionClient>, Failure>>>(
    slot: &mut Option<Arc<PartitionClient>>,
    connect: impl FnOnce() -> F,
) -> Result<Arc<PartitionClient>, Failure> {
    if let Some(c) = slot {
        return Ok(c.clone());
    }
    let c = connect().await?;
    *slot = Some(c.clone());
    Ok(c)
}

fn protocol_error(e: &KafkaError) -> Option<ProtocolError> {
    match e {
        KafkaError::ServerError { protocol_error, .. } => Some(*protocol_error),
        _ => None,
    }
}

/// Error codes that refuse a record for what it is: sending it again cannot succeed.
fn refuses_the_record(code: ProtocolError) -> bool {
    matches!(
        code,
        ProtocolError::MessageTooLarge
            | ProtocolError::RecordListTooLarge
            | ProtocolError::InvalidRecord
            | ProtocolError::CorruptMessage
            | ProtocolError::InvalidTimestamp
            | ProtocolError::UnsupportedForMessageFormat
    )
}

/// The time now, for a record's timestamp (rskafka's chrono is built without its clock).
pub(crate) fn now() -> DateTime<Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Queue → Kafka topic partition.
#[derive(Debug)]
pub struct KafkaSink {
    connector: String,
    cfg: KafkaSinkConfig,
    client: Option<Arc<PartitionClient>>,
    /// The highest sequence of the batch being sent that the broker acknowledged (records found
    /// good one by one): a retry of the same batch skips them.
    confirmed: Option<u64>,
}

/// What one produce request came to.
enum Produced {
    Acknowledged,
    /// Refused for a record of it (a permanent error code), with the broker's words.
    Refused(String),
}

impl KafkaSink {
    /// A sink for connector `connector` (part of every record key). Connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for no brokers, a broker that is not `host:port`, a topic name
    /// Kafka refuses, a negative partition, a zero timeout.
    pub fn new(connector: &str, cfg: KafkaSinkConfig) -> Result<KafkaSink, ConnectError> {
        check_common(
            connector,
            &cfg.brokers,
            &cfg.topic,
            cfg.partition,
            cfg.timeout_ms,
        )?;
        Ok(KafkaSink {
            connector: connector.to_owned(),
            cfg,
            client: None,
            confirmed: None,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    async fn client(&mut self) -> Result<Arc<PartitionClient>, Failure> {
        let timeout = self.timeout();
        let (cfg, connector) = (&self.cfg, &self.connector);
        cached(&mut self.client, || {
            connect(connector, &cfg.brokers, &cfg.topic, cfg.partition, timeout)
        })
        .await
    }

    fn record(&self, m: &Outgoing) -> Record {
        Record {
            key: Some(format!("{}-{}", self.connector, m.seq).into_bytes()),
            value: Some(m.body.clone()),
            headers: [(SEQ_HEADER.to_owned(), m.seq.to_string().into_bytes())].into(),
            timestamp: now(),
        }
    }

    /// Produces `records` as one request: acknowledged, refused for a record, or a transient
    /// failure (the client is dropped and built anew next time).
    async fn produce(&mut self, records: Vec<Record>) -> Result<Produced, Failure> {
        let client = self.client().await?;
        let n = records.len();
        let timeout = self.timeout();
        match tokio::time::timeout(
            timeout + Duration::from_millis(500),
            client.produce(records, Compression::NoCompression),
        )
        .await
        {
            Ok(Ok(_offsets)) => Ok(Produced::Acknowledged),
            Ok(Err(e)) if protocol_error(&e).is_some_and(refuses_the_record) => {
                Ok(Produced::Refused(e.to_string()))
            }
            Ok(Err(e)) => {
                self.client = None;
                Err(Failure::Transient(format!("produce of {n} records: {e}")))
            }
            Err(_) => {
                self.client = None;
                Err(Failure::Transient(format!(
                    "produce of {n} records: no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

impl SinkTarget for KafkaSink {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        // A retry of the same batch: skip what the broker acknowledged one by one before.
        let skip = batch
            .iter()
            .take_while(|m| self.confirmed.is_some_and(|c| m.seq <= c))
            .count();
        let todo = &batch[skip..];
        if todo.is_empty() {
            return Ok(0);
        }
        let records: Vec<Record> = todo.iter().map(|m| self.record(m)).collect();
        let reason = match self.produce(records).await? {
            Produced::Acknowledged => return Ok(0),
            Produced::Refused(reason) => reason,
        };
        if todo.len() == 1 {
            return Err(Failure::Rejected {
                index: skip,
                reason,
            });
        }
        // The request was refused whole (nothing of it appended): find the refused record.
        tracing::warn!(connector = %self.connector, first = todo[0].seq, records = todo.len(), %reason,
            "produce refused; sending the batch's records one by one to find the refused one");
        for (i, m) in todo.iter().enumerate() {
            match self.produce(vec![self.record(m)]).await? {
                Produced::Acknowledged => self.confirmed = Some(m.seq),
                Produced::Refused(reason) => {
                    return Err(Failure::Rejected {
                        index: skip + i,
                        reason,
                    });
                }
            }
        }
        // Each record alone was accepted (the request as a whole was too large): all written.
        Ok(0)
    }
}

/// The stored position of a source: the next offset to read, and of what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredOffset {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// The offset file of connector `connector` reading into queue directory `queue`.
pub fn offset_file(queue: &Path, connector: &str) -> PathBuf {
    queue.join(format!("connect.{connector}.kafka-offset"))
}

/// Writes `text` to `path` durably: a temporary file beside it, synced, renamed over it, the
/// directory synced.
fn write_durably(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Kafka topic partition → queue.
#[derive(Debug)]
pub struct KafkaSource {
    connector: String,
    cfg: KafkaSourceConfig,
    file: PathBuf,
    client: Option<Arc<PartitionClient>>,
    /// The offset stored in the file (what a restart reads from).
    stored: Option<i64>,
    /// The next offset to fetch (past what was handed to the runtime).
    next: Option<i64>,
}

impl KafkaSource {
    /// A source for connector `connector` writing into queue directory `queue` (where its offset
    /// file is). Reads the offset file; connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for bad settings (as [`KafkaSink::new`], and `fetch_max_bytes`
    /// or `fetch_ms` out of range), an offset file that does not parse, or one that belongs to
    /// another topic or partition (delete it to start over).
    pub fn new(
        connector: &str,
        queue: &Path,
        cfg: KafkaSourceConfig,
    ) -> Result<KafkaSource, ConnectError> {
        check_common(
            connector,
            &cfg.brokers,
            &cfg.topic,
            cfg.partition,
            cfg.timeout_ms,
        )?;
        if cfg.fetch_max_bytes < 1024 {
            return Err(bad(
                connector,
                "fetch_max_bytes",
                format!("{} is below 1024", cfg.fetch_max_bytes),
            ));
        }
        if cfg.fetch_ms == 0 || cfg.fetch_ms > i32::MAX as u64 {
            return Err(bad(connector, "fetch_ms", "must be 1 to 2147483647"));
        }
        let file = offset_file(queue, connector);
        let stored = match std::fs::read(&file) {
            Ok(bytes) => {
                let s: StoredOffset = serde_json::from_slice(&bytes).map_err(|e| {
                    bad(
                        connector,
                        "(offset file)",
                        format!("{} does not parse: {e}", file.display()),
                    )
                })?;
                if s.topic != cfg.topic || s.partition != cfg.partition {
                    return Err(bad(
                        connector,
                        "topic",
                        format!(
                            "{} holds the offset of {}/{}, not of {}/{}: delete it to start \
                             {}/{} from `start`",
                            file.display(),
                            s.topic,
                            s.partition,
                            cfg.topic,
                            cfg.partition,
                            cfg.topic,
                            cfg.partition
                        ),
                    ));
                }
                Some(s.next_offset)
            }
            // No file (a first start) or no queue directory (which the runtime reports).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // Unreadable (a permission, an I/O error): starting from `start` instead could
            // skip or repeat the whole partition.
            Err(e) => {
                return Err(bad(
                    connector,
                    "(offset file)",
                    format!("{} cannot be read: {e}", file.display()),
                ));
            }
        };
        Ok(KafkaSource {
            connector: connector.to_owned(),
            cfg,
            file,
            client: None,
            stored,
            next: stored,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    async fn client(&mut self) -> Result<Arc<PartitionClient>, Failure> {
        let timeout = self.timeout();
        let (cfg, connector) = (&self.cfg, &self.connector);
        cached(&mut self.client, || {
            connect(connector, &cfg.brokers, &cfg.topic, cfg.partition, timeout)
        })
        .await
    }

    /// `get_offset`, bounded by the timeout; a failure drops the client.
    async fn offset_at(&mut self, at: OffsetAt) -> Result<i64, Failure> {
        let client = self.client().await?;
        match tokio::time::timeout(self.timeout(), client.get_offset(at)).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => {
                self.client = None;
                Err(Failure::Transient(format!("offset {at:?}: {e}")))
            }
            Err(_) => {
                self.client = None;
                Err(Failure::Transient(format!("offset {at:?}: timed out")))
            }
        }
    }

    /// The stored offset is out of the partition's range: an error, or a jump to the earliest
    /// offset, both logged with the offsets.
    async fn out_of_range(&mut self, offset: i64) -> Result<(), Failure> {
        let earliest = self.offset_at(OffsetAt::Earliest).await?;
        let latest = self.offset_at(OffsetAt::Latest).await?;
        let what = format!(
            "offset {offset} of {}/{} is out of the partition's range {earliest}..{latest} \
             (retention or deletion removed records not yet read, or the topic was created anew)",
            self.cfg.topic, self.cfg.partition
        );
        match self.cfg.on_out_of_range {
            KafkaOutOfRange::Error => {
                tracing::error!(connector = %self.connector, file = %self.file.display(), "{what}; stopped here (on_out_of_range: error): set next_offset in the file, or delete it to start from `start`");
                Err(Failure::Transient(format!(
                    "{what}; on_out_of_range is error: fix or delete {}",
                    self.file.display()
                )))
            }
            KafkaOutOfRange::Earliest => {
                tracing::error!(connector = %self.connector, skipped = earliest.saturating_sub(offset).max(0), "{what}; going on from the earliest offset {earliest} (on_out_of_range: earliest)");
                self.next = Some(earliest);
                Ok(())
            }
        }
    }
}

impl SourceOrigin for KafkaSource {
    /// The record's offset.
    type Token = i64;

    async fn fetch(&mut self, max: usize) -> Result<Vec<Incoming<i64>>, Failure> {
        let offset = match self.next {
            Some(o) => o,
            None => {
                let o = match self.cfg.start {
                    KafkaStart::Earliest => self.offset_at(OffsetAt::Earliest).await?,
                    KafkaStart::Latest => self.offset_at(OffsetAt::Latest).await?,
                };
                tracing::info!(connector = %self.connector, offset = o, start = ?self.cfg.start, "no stored offset: starting");
                self.next = Some(o);
                o
            }
        };
        let client = self.client().await?;
        let wait = i32::try_from(self.cfg.fetch_ms).unwrap_or(i32::MAX);
        let fetched = tokio::time::timeout(
            Duration::from_millis(self.cfg.fetch_ms) + self.timeout(),
            client.fetch_records(offset, 1..self.cfg.fetch_max_bytes, wait),
        )
        .await;
        let records = match fetched {
            // Past the partition's end: Kafka answers OFFSET_OUT_OF_RANGE, some brokers (tansu)
            // an empty fetch; either way the records up to it are not this offset's past.
            Ok(Ok((records, high_watermark))) if records.is_empty() && offset > high_watermark => {
                self.out_of_range(offset).await?;
                return Ok(Vec::new());
            }
            Ok(Ok((records, _))) => records,
            Ok(Err(e)) if protocol_error(&e) == Some(ProtocolError::OffsetOutOfRange) => {
                self.out_of_range(offset).await?;
                return Ok(Vec::new());
            }
            Ok(Err(e)) => {
                self.client = None;
                return Err(Failure::Transient(format!(
                    "fetch from offset {offset}: {e}"
                )));
            }
            Err(_) => {
                self.client = None;
                return Err(Failure::Transient(format!(
                    "fetch from offset {offset}: no answer within {} ms",
                    self.cfg.fetch_ms + self.cfg.timeout_ms
                )));
            }
        };
        let mut out = Vec::new();
        for r in records {
            if r.offset < offset {
                continue;
            }
            if out.len() == max {
                break;
            }
            self.next = Some(r.offset + 1);
            out.push(Incoming {
                token: r.offset,
                id: format!("{}/{}@{}", self.cfg.topic, self.cfg.partition, r.offset),
                body: r.record.value.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    async fn ack(&mut self, tokens: &[i64]) -> Result<(), Failure> {
        let Some(next) = tokens.iter().max().map(|o| o + 1) else {
            return Ok(());
        };
        if self.stored.is_some_and(|s| s >= next) {
            return Ok(());
        }
        let text = serde_json::to_vec(&StoredOffset {
            topic: self.cfg.topic.clone(),
            partition: self.cfg.partition,
            next_offset: next,
        })
        .map_err(|e| Failure::Transient(format!("encoding the offset: {e}")))?;
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || write_durably(&file, &text)).await;
        match written {
            Ok(Ok(())) => {
                self.stored = Some(next);
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Transient(format!(
                "writing {}: {e}",
                self.file.display()
            ))),
            Err(e) => Err(Failure::Transient(format!(
                "writing {}: {e}",
                self.file.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(brokers: &[&str], topic: &str, partition: i32) -> Result<KafkaSink, ConnectError> {
        KafkaSink::new(
            "k",
            KafkaSinkConfig {
                brokers: brokers.iter().map(|s| s.to_string()).collect(),
                topic: topic.into(),
                partition,
                timeout_ms: 1000,
            },
        )
    }

    fn key_of(r: Result<impl std::fmt::Debug, ConnectError>) -> String {
        match r {
            Err(ConnectError::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert!(sink(&["127.0.0.1:9092", "kafka-1:9092"], "orders.v1", 0).is_ok());
        assert_eq!(key_of(sink(&[], "t", 0)), "brokers");
        assert_eq!(key_of(sink(&["127.0.0.1"], "t", 0)), "brokers");
        assert_eq!(key_of(sink(&[":9092"], "t", 0)), "brokers");
        assert_eq!(key_of(sink(&["h:0"], "t", 0)), "brokers");
        assert_eq!(key_of(sink(&["h:1"], "", 0)), "topic");
        assert_eq!(key_of(sink(&["h:1"], "a/b", 0)), "topic");
        assert_eq!(key_of(sink(&["h:1"], "t", -1)), "partition");
    }

    #[test]
    fn the_record_carries_key_and_sequence_header() {
        let s = sink(&["h:1"], "t", 0).unwrap();
        let r = s.record(&Outgoing {
            seq: 42,
            body: b"{}".to_vec(),
        });
        assert_eq!(r.key.as_deref(), Some(&b"k-42"[..]));
        assert_eq!(
            r.headers.get(SEQ_HEADER).map(Vec::as_slice),
            Some(&b"42"[..])
        );
        assert_eq!(r.value.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn the_offset_file_round_trips_and_belongs_to_its_topic() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |topic: &str| KafkaSourceConfig {
            brokers: vec!["h:1".into()],
            topic: topic.into(),
            partition: 0,
            start: KafkaStart::Earliest,
            fetch_max_bytes: 1 << 20,
            fetch_ms: 100,
            on_out_of_range: KafkaOutOfRange::Error,
            timeout_ms: 1000,
        };
        let s = KafkaSource::new("k", dir.path(), cfg("a")).unwrap();
        assert_eq!(s.next, None);
        let text = serde_json::to_vec(&StoredOffset {
            topic: "a".into(),
            partition: 0,
            next_offset: 17,
        })
        .unwrap();
        write_durably(&offset_file(dir.path(), "k"), &text).unwrap();
        let s = KafkaSource::new("k", dir.path(), cfg("a")).unwrap();
        assert_eq!(s.next, Some(17));
        assert_eq!(key_of(KafkaSource::new("k", dir.path(), cfg("b"))), "topic");
        std::fs::write(offset_file(dir.path(), "k"), b"17").unwrap();
        assert_eq!(
            key_of(KafkaSource::new("k", dir.path(), cfg("a"))),
            "(offset file)"
        );
    }
}
