//! Slack: [`SlackSink`] posts a queue's messages to an incoming webhook, as text rendered from
//! the message by the first matching rule.
//!
//! * **Rules**: each has an optional condition on one field of the message (`equals`, `above`,
//!   `below`, `exists`) and a text template (`{field.path}`, `{seq}`, `{json}`); a message
//!   matching no rule is not posted (it counts as forwarded: nothing to send). No rules: every
//!   message is posted as its JSON.
//! * **Dedup**: Slack has no idempotency key. The sink posts one message at a time and, after a
//!   transient failure, posts again only from the first message without a `200 ok`; a message is
//!   posted twice only if its response was lost, or if the connector crashed before committing
//!   its cursor (then the posted part of the batch comes again: use a small `batch`).

use std::time::Duration;

use hyper::Uri;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{HttpClient, parse_url};
use crate::{ConnectError, Failure, Outgoing, SinkTarget};

fn default_timeout_ms() -> u64 {
    10_000
}

/// `slack_sink:` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSinkConfig {
    /// The incoming webhook's URL (`https://hooks.slack.com/services/...`).
    pub webhook_url: String,
    /// The first rule whose `when` holds renders the text; none holds: not posted. Empty: every
    /// message is posted as its JSON.
    #[serde(default)]
    pub rules: Vec<SlackRule>,
    /// One POST's time limit (default 10000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// A condition and the text posted when it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackRule {
    /// When to post (default: always).
    #[serde(default)]
    pub when: Option<SlackCondition>,
    /// The text: `{a.b}` is field `b` of field `a` of the message (strings as they are, other
    /// values as JSON), `{seq}` the queue sequence, `{json}` the whole message; `{{`, `}}` are
    /// braces.
    pub text: String,
}

/// A test on one field of the message; every test given must hold. A missing field fails all
/// tests but `exists: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackCondition {
    /// The field's dotted path (`customer.tier`).
    pub field: String,
    /// The field equals this JSON value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// The field is a number above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// The field is a number below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// The field is present and not null (`true`) or absent or null (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
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

impl SlackCondition {
    fn holds(&self, msg: &Value) -> bool {
        let v = lookup(msg, &self.field);
        if let Some(want) = self.exists
            && want != v.is_some()
        {
            return false;
        }
        if let Some(want) = &self.equals
            && v != Some(want)
        {
            return false;
        }
        let num = v.and_then(Value::as_f64);
        if let Some(bound) = self.above
            && num.is_none_or(|n| n <= bound)
        {
            return false;
        }
        if let Some(bound) = self.below
            && num.is_none_or(|n| n >= bound)
        {
            return false;
        }
        true
    }
}

/// Renders `template` for message `msg`; `Err` names an unclosed brace.
fn render(template: &str, msg: &Value, seq: u64) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "a lone '}}' at byte {}",
                template.len() - tail.len()
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "'{{' at byte {} is not closed",
                template.len() - tail.len()
            ));
        };
        match &tail[1..end] {
            "seq" => out.push_str(&seq.to_string()),
            "json" => out.push_str(&msg.to_string()),
            path => match lookup(msg, path) {
                Some(Value::String(s)) => out.push_str(s),
                Some(v) => out.push_str(&v.to_string()),
                None => out.push('-'),
            },
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Queue → Slack incoming webhook.
#[derive(Debug)]
pub struct SlackSink {
    cfg: SlackSinkConfig,
    url: Uri,
    http: HttpClient,
    /// The highest sequence of the batch being sent that Slack accepted: a retry skips it.
    done: Option<u64>,
}

impl SlackSink {
    /// A sink for connector `connector` (for error messages).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for a URL that is not http(s) or a template that does not
    /// parse.
    pub fn new(connector: &str, cfg: SlackSinkConfig) -> Result<SlackSink, ConnectError> {
        let url = parse_url(connector, "webhook_url", &cfg.webhook_url)?;
        let bad = |key: String, reason: String| ConnectError::Config {
            connector: connector.to_owned(),
            key,
            reason,
        };
        for (i, rule) in cfg.rules.iter().enumerate() {
            render(&rule.text, &Value::Null, 0).map_err(|e| bad(format!("rules[{i}].text"), e))?;
            if let Some(c) = &rule.when
                && c.field.is_empty()
            {
                return Err(bad(
                    format!("rules[{i}].when.field"),
                    "must not be empty".into(),
                ));
            }
        }
        let http = HttpClient::new(Duration::from_millis(cfg.timeout_ms))
            .map_err(|e| bad("webhook_url".into(), e))?;
        Ok(SlackSink {
            cfg,
            url,
            http,
            done: None,
        })
    }

    /// The text to post for a message, if any rule matches.
    fn text(&self, m: &Outgoing) -> Result<Option<String>, String> {
        let msg: Value = serde_json::from_slice(&m.body)
            .map_err(|e| format!("the message is not JSON (format must be json): {e}"))?;
        if self.cfg.rules.is_empty() {
            return Ok(Some(msg.to_string()));
        }
        for rule in &self.cfg.rules {
            if rule.when.as_ref().is_none_or(|c| c.holds(&msg)) {
                return render(&rule.text, &msg, m.seq).map(Some);
            }
        }
        Ok(None)
    }
}

impl SinkTarget for SlackSink {
    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, Failure> {
        for (i, m) in batch.iter().enumerate() {
            if self.done.is_some_and(|d| m.seq <= d) {
                continue;
            }
            let text = match self.text(m) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    self.done = Some(m.seq);
                    continue;
                }
                Err(reason) => return Err(Failure::Rejected { index: i, reason }),
            };
            let payload = serde_json::json!({ "text": text }).to_string().into_bytes();
            let resp = self
                .http
                .post(&self.url, "application/json", &[], payload)
                .await
                .map_err(Failure::Transient)?;
            match resp.status {
                200..=299 => self.done = Some(m.seq),
                // Rate limited, timed out, or Slack's side: may heal.
                429 | 408 | 500..=599 => {
                    return Err(Failure::Transient(format!(
                        "message {}: HTTP {} {}{}",
                        m.seq,
                        resp.status,
                        resp.body,
                        resp.retry_after
                            .map_or_else(String::new, |s| format!(" (retry after {s} s)"))
                    )));
                }
                // invalid_payload, no_text, channel_not_found, channel_is_archived, ...:
                // this message can never be posted.
                status => {
                    return Err(Failure::Rejected {
                        index: i,
                        reason: format!("HTTP {status}: {}", resp.body),
                    });
                }
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_conditions() {
        let msg = serde_json::json!({"id": 7, "item": "tea", "c": {"tier": "gold"}, "n": null});
        assert_eq!(
            render("#{seq} {id}: {item} ({c.tier}) {n} {{x}}", &msg, 3).unwrap(),
            "#3 7: tea (gold) - {x}"
        );
        assert!(render("{id", &msg, 0).is_err());
        assert!(render("id}", &msg, 0).is_err());
        let cond = |field: &str| SlackCondition {
            field: field.into(),
            equals: None,
            above: None,
            below: None,
            exists: None,
        };
        assert!(
            SlackCondition {
                above: Some(6.0),
                ..cond("id")
            }
            .holds(&msg)
        );
        assert!(
            !SlackCondition {
                above: Some(7.0),
                ..cond("id")
            }
            .holds(&msg)
        );
        assert!(
            SlackCondition {
                below: Some(8.0),
                ..cond("id")
            }
            .holds(&msg)
        );
        assert!(
            !SlackCondition {
                above: Some(0.0),
                ..cond("item")
            }
            .holds(&msg)
        );
        assert!(
            SlackCondition {
                equals: Some("gold".into()),
                ..cond("c.tier")
            }
            .holds(&msg)
        );
        assert!(
            SlackCondition {
                exists: Some(false),
                ..cond("n")
            }
            .holds(&msg)
        );
        assert!(
            !SlackCondition {
                exists: Some(true),
                ..cond("missing")
            }
            .holds(&msg)
        );
    }
}
