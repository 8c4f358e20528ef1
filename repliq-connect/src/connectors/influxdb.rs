//! InfluxDB: [`InfluxDbSink`] writes each message as one point (line protocol over HTTP, the
//! 1.x `/write` endpoint, which InfluxDB 2.x and 3.x also serve), with its measurement, tags,
//! fields and time mapped from the message's fields by the configuration.
//!
//! * **Dedup key**: InfluxDB stores one point per measurement, tag set and time; a point
//!   written again replaces itself. A batch sent again after a crash or a lost response leaves
//!   the same points: no duplicates (as long as two messages never share time and tags).
//! * **Rejections**: a `400` (a field type conflict, a value InfluxDB refuses) rejects the
//!   request; the sink writes the batch's points one by one (harmless: writes are idempotent)
//!   to find the one refused, which is dead-lettered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper::header::HeaderValue;
use influxdb_line_protocol::LineProtocolBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{HttpClient, parse_url};
use crate::{ConnectError, Encoder, Failure, Outgoing, SinkTarget};

fn default_timeout_ms() -> u64 {
    10_000
}

/// The unit of the time field's integer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Nanoseconds since the Unix epoch (default).
    #[default]
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

impl Precision {
    fn as_query(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "u",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }
}

/// `influxdb_sink:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxDbSinkConfig {
    /// `http://host:8086` (or `https://`).
    pub url: String,
    /// The database (InfluxDB 2.x/3.x: the bucket, through their 1.x-compatible `/write`).
    pub database: String,
    /// The retention policy (default: the database's default).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// Sent as `Authorization: Token <token>` (InfluxDB 2.x/3.x).
    #[serde(default)]
    pub token: Option<String>,
    /// Run `CREATE DATABASE` (1.x) before the first write and after a "database not found".
    #[serde(default)]
    pub create_database: bool,
    /// The measurement's name.
    pub measurement: String,
    /// Tag key → dotted path of the message field giving its value (missing or null: no tag).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Field key → dotted path of the message field (missing or null: no such field; a point
    /// needs at least one).
    pub fields: BTreeMap<String, String>,
    /// Dotted path of the integer message field giving the point's time.
    pub time: String,
    /// The time field's unit (default `ns`).
    #[serde(default)]
    pub precision: Precision,
    /// One request's time limit (default 10000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| match v {
            Value::Object(m) => m.get(key),
            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
        .filter(|v| !v.is_null())
}

enum FieldVal {
    I(i64),
    F(f64),
    B(bool),
    S(String),
}

fn field_val(v: &Value) -> FieldVal {
    match v {
        Value::Bool(b) => FieldVal::B(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => FieldVal::I(i),
            (None, Some(f)) => FieldVal::F(f),
            (None, None) => FieldVal::S(n.to_string()),
        },
        Value::String(s) => FieldVal::S(s.clone()),
        other => FieldVal::S(other.to_string()),
    }
}

/// How a message becomes a point: what the sink's encoder needs of the configuration.
#[derive(Debug)]
struct Points {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    time: String,
}

impl Points {
    /// One line of line protocol for a message's JSON; `Err` (a permanent failure) says why
    /// not.
    #[cfg(test)]
    fn line(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let msg: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the message is not JSON (format must be json): {e}"))?;
        self.line_of(&msg)
    }

    /// One line of line protocol for a message rendered as JSON.
    fn line_of(&self, msg: &Value) -> Result<Vec<u8>, String> {
        let time = lookup(msg, &self.time)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("time field {:?} is missing or not an integer", self.time))?;
        let mut lp = LineProtocolBuilder::new().measurement(&self.measurement);
        for (key, path) in &self.tags {
            let value = match lookup(msg, path) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => continue,
            };
            if !value.is_empty() {
                lp = lp.tag(key, &value);
            }
        }
        let mut fields = self
            .fields
            .iter()
            .filter_map(|(key, path)| lookup(msg, path).map(|v| (key, field_val(v))));
        let Some((key, first)) = fields.next() else {
            return Err(format!(
                "none of the fields {:?} is in the message",
                self.fields.values().collect::<Vec<_>>()
            ));
        };
        let mut lp = match first {
            FieldVal::I(v) => lp.field(key, v),
            FieldVal::F(v) => lp.field(key, v),
            FieldVal::B(v) => lp.field(key, v),
            FieldVal::S(v) => lp.field(key, v.as_str()),
        };
        for (key, value) in fields {
            lp = match value {
                FieldVal::I(v) => lp.field(key, v),
                FieldVal::F(v) => lp.field(key, v),
                FieldVal::B(v) => lp.field(key, v),
                FieldVal::S(v) => lp.field(key, v.as_str()),
            };
        }
        Ok(lp.timestamp(time).close_line().build())
    }
}

/// Queue → InfluxDB points.
#[derive(Debug)]
pub struct InfluxDbSink {
    cfg: InfluxDbSinkConfig,
    write_url: Uri,
    query_url: Uri,
    auth: Vec<(&'static str, HeaderValue)>,
    http: HttpClient,
    database_created: bool,
    points: Arc<Points>,
}

impl InfluxDbSink {
    /// A sink for connector `connector` (for error messages).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a URL that is not http(s), an empty name, no fields.
    pub fn new(connector: &str, cfg: InfluxDbSinkConfig) -> Result<InfluxDbSink, ConnectError> {
        let bad = |key: &str, reason: String| ConnectError::Config {
            connector: connector.to_owned(),
            key: key.to_owned(),
            reason,
        };
        parse_url(connector, "url", &cfg.url)?;
        for (key, value) in [
            ("database", &cfg.database),
            ("measurement", &cfg.measurement),
            ("time", &cfg.time),
        ] {
            if value.is_empty() {
                return Err(bad(key, "must not be empty".into()));
            }
        }
        if cfg.fields.is_empty() {
            return Err(bad("fields", "a point needs at least one field".into()));
        }
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let root = cfg.url.trim_end_matches('/');
        let mut write = format!(
            "{root}/write?db={}&precision={}",
            enc(&cfg.database),
            cfg.precision.as_query()
        );
        if let Some(rp) = &cfg.retention_policy {
            write.push_str(&format!("&rp={}", enc(rp)));
        }
        let query = format!(
            "{root}/query?q={}",
            enc(&format!(
                "CREATE DATABASE \"{}\"",
                cfg.database.replace('"', "\\\"")
            ))
        );
        let parse = |u: String| {
            u.parse::<Uri>()
                .map_err(|e| bad("url", format!("{u:?}: {e}")))
        };
        let mut auth = Vec::new();
        if let Some(t) = &cfg.token {
            let v = HeaderValue::from_str(&format!("Token {t}"))
                .map_err(|e| bad("token", e.to_string()))?;
            auth.push(("authorization", v));
        }
        let http =
            HttpClient::new(Duration::from_millis(cfg.timeout_ms)).map_err(|e| bad("url", e))?;
        Ok(InfluxDbSink {
            write_url: parse(write)?,
            query_url: parse(query)?,
            auth,
            http,
            database_created: false,
            points: Arc::new(Points {
                measurement: cfg.measurement.clone(),
                tags: cfg.tags.clone(),
                fields: cfg.fields.clone(),
                time: cfg.time.clone(),
            }),
            cfg,
        })
    }

    /// One line of line protocol for a message's JSON; `Err` (a permanent failure) says why
    /// not.
    #[cfg(test)]
    fn line(&self, m: &Outgoing) -> Result<Vec<u8>, String> {
        self.points.line(&m.body)
    }

    async fn create_database(&mut self) -> Result<(), Failure> {
        let resp = self
            .http
            .post(
                &self.query_url,
                "application/x-www-form-urlencoded",
                &self.auth,
                Vec::new(),
            )
            .await
            .map_err(Failure::Transient)?;
        if resp.status != 200 {
            return Err(Failure::Transient(format!(
                "CREATE DATABASE: HTTP {} {}",
                resp.status, resp.body
            )));
        }
        self.database_created = true;
        Ok(())
    }

    /// Writes `body`: `Ok(None)` written, `Ok(Some(reason))` refused (400), `Err` transient.
    async fn write(&mut self, body: Vec<u8>) -> Result<Option<String>, Failure> {
        if self.cfg.create_database && !self.database_created {
            self.create_database().await?;
        }
        let resp = self
            .http
            .post(
                &self.write_url,
                "text/plain; charset=utf-8",
                &self.auth,
                body,
            )
            .await
            .map_err(Failure::Transient)?;
        match resp.status {
            200..=299 => Ok(None),
            400 | 413 | 422 => Ok(Some(format!("HTTP {}: {}", resp.status, resp.body))),
            404 => {
                // Database not found: it may be created (by us, or by someone).
                self.database_created = false;
                Err(Failure::Transient(format!("HTTP 404: {}", resp.body)))
            }
            status => Err(Failure::Transient(format!(
                "HTTP {status}: {}{}",
                resp.body,
                resp.retry_after
                    .map_or_else(String::new, |s| format!(" (retry after {s} s)"))
            ))),
        }
    }
}

impl SinkTarget for InfluxDbSink {
    /// `batch` holds lines of line protocol (from [`InfluxDbSink`]'s encoder): one request.
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        let body: Vec<u8> = batch.iter().flat_map(|m| m.body.iter().copied()).collect();
        match self.write(body).await? {
            None => Ok(0),
            Some(reason) => self.find_refused(batch, reason).await,
        }
    }

    /// A record → its JSON value (through the queue's schema) → a line of line protocol, with
    /// the configured measurement, tags, fields and time; a message without the time or any of
    /// the fields is refused (dead-lettered).
    fn encoder(&self) -> Option<Encoder> {
        let points = self.points.clone();
        Some(Arc::new(move |schema, payload| {
            let schema = schema.ok_or("the queue has no schema.json")?;
            let msg = repliq::descriptor::to_json(&schema.root, payload)
                .map_err(|e| format!("the record does not render as a `{}`: {e}", schema.name))?;
            points.line_of(&msg)
        }))
    }
}

impl InfluxDbSink {
    /// After a 400 for several points: writes them one by one (idempotent) to find the first
    /// refused one.
    async fn find_refused(
        &mut self,
        batch: &[Outgoing],
        batch_reason: String,
    ) -> Result<u64, Failure> {
        if batch.len() == 1 {
            return Err(Failure::Rejected {
                index: 0,
                reason: batch_reason,
            });
        }
        for (i, m) in batch.iter().enumerate() {
            if let Some(reason) = self.write(m.body.clone()).await? {
                return Err(Failure::Rejected { index: i, reason });
            }
        }
        // Each point alone was accepted (a conflict inside the batch, e.g. one field with two
        // types): all are written now.
        tracing::warn!(first = batch.first().map(|m| m.seq), %batch_reason, "batch refused, but each point alone was written");
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_one_line() {
        let cfg = InfluxDbSinkConfig {
            url: "http://127.0.0.1:8086".into(),
            database: "db".into(),
            retention_policy: None,
            token: None,
            create_database: false,
            measurement: "readings".into(),
            tags: [
                ("sensor".into(), "sensor".into()),
                ("site".into(), "where.site".into()),
            ]
            .into(),
            fields: [
                ("value".into(), "value".into()),
                ("label".into(), "label".into()),
                ("ok".into(), "ok".into()),
                ("x".into(), "missing".into()),
            ]
            .into(),
            time: "at".into(),
            precision: Precision::Ns,
            timeout_ms: 1000,
        };
        let sink = InfluxDbSink::new("t", cfg).unwrap();
        let body = serde_json::json!({"sensor": "s 1", "where": {"site": 4}, "value": 2.5,
            "label": "a \"b\"", "ok": true, "at": 17});
        let line = sink
            .line(&Outgoing {
                seq: 0,
                body: body.to_string().into_bytes(),
            })
            .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "readings,sensor=s\\ 1,site=4 label=\"a \\\"b\\\"\",ok=true,value=2.5 17\n"
        );
        let no_time = serde_json::json!({"value": 1});
        assert!(
            sink.line(&Outgoing {
                seq: 0,
                body: no_time.to_string().into_bytes()
            })
            .unwrap_err()
            .contains("time field")
        );
    }
}
