//! A final journal, as `repliq cat DIR` prints it: `{"seq":N,"time":T,"message":{..}}` lines.

use std::path::Path;

use serde::Deserialize;

use crate::Error;
use crate::history::At;

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The journal sequence number.
    pub seq: u64,
    /// Write time (the writer's clock), nanoseconds since the Unix epoch.
    pub time: u64,
    /// The message's `producer` field, if it has one.
    pub producer: Option<u64>,
    /// The message's `seq` field (the producer's sequence), if it has one.
    pub pseq: Option<u64>,
    /// The whole message, compared between replicas.
    pub message: serde_json::Value,
    /// Where the line was.
    pub at: At,
}

impl Record {
    /// The message key (producer, seq), if the message carries both.
    pub fn key(&self) -> Option<(u64, u64)> {
        Some((self.producer?, self.pseq?))
    }
}

/// One node's journal, records in sequence order.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// The node's name (in reports).
    pub node: String,
    /// Its records, by increasing `seq`.
    pub records: Vec<Record>,
}

#[derive(Deserialize)]
struct Line {
    seq: u64,
    time: u64,
    message: serde_json::Value,
}

impl Journal {
    /// Parses `repliq cat` output; `file` names it in errors.
    pub fn parse(node: &str, file: &str, text: &str) -> Result<Self, Error> {
        let mut records: Vec<Record> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = At {
                file: file.to_owned(),
                line: i + 1,
            };
            if line.trim().is_empty() {
                continue;
            }
            let l: Line = serde_json::from_str(line).map_err(|e| Error::Parse {
                at: at.clone(),
                what: "journal record (a `repliq cat` line)",
                message: e.to_string(),
            })?;
            if let Some(prev) = records.last()
                && l.seq <= prev.seq
            {
                return Err(Error::Invalid {
                    at,
                    message: format!("sequence {} follows {}", l.seq, prev.seq),
                });
            }
            let field = |name: &str| l.message.get(name).and_then(serde_json::Value::as_u64);
            records.push(Record {
                seq: l.seq,
                time: l.time,
                producer: field("producer"),
                pseq: field("seq"),
                message: l.message.clone(),
                at,
            });
        }
        Ok(Journal {
            node: node.to_owned(),
            records,
        })
    }

    /// Reads `repliq cat` output from a file.
    pub fn read(node: &str, path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(node, &path.display().to_string(), &text)
    }
}
