//! The history: client operations as JSON lines (the format is in `docs/CHECKER.md`).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What happened to an operation: it was started, or it ended one of three ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client started the operation.
    Invoke,
    /// It took effect, and the client was told so (an enqueue: acknowledged).
    Ok,
    /// It certainly did not take effect (an enqueue refused before anything was written).
    Fail,
    /// It may or may not have taken effect (a timeout; an enqueue written but not acknowledged).
    Unknown,
}

/// The operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// A producer writes message (`producer`, `seq`).
    Enqueue,
    /// A consumer reads the record at `journal_seq`, message (`producer`, `seq`).
    Dequeue,
    /// A consumer acknowledges (commits) what it dequeued.
    Ack,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// `invoke`, `ok`, `fail` or `unknown`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `enqueue`, `dequeue` or `ack`.
    pub f: Function,
    /// The producer that wrote the message (every enqueue; a dequeue or ack that completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<u64>,
    /// The producer's own sequence number of the message, unique per producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The consumer (its cursor name): every dequeue and ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// The node the client ran against.
    pub node: String,
    /// The replication epoch the client saw on that node (before invoking; after completing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time: u64,
    /// The journal sequence number the queue returned (an acknowledged enqueue, a dequeue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_seq: Option<u64>,
    /// Why it failed or is unknown, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the line came from: file and line number (filled in when read, never written).
    #[serde(skip)]
    pub at: At,
}

/// A line of an input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct At {
    /// The file (as given).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl fmt::Display for Op {
    /// The line as it was in the history, prefixed with where it was.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        write!(f, "{}: {json}", self.at)
    }
}

impl Op {
    /// The message key of an enqueue (or of a completed dequeue/ack): (producer, seq).
    pub fn key(&self) -> Option<(u64, u64)> {
        Some((self.producer?, self.seq?))
    }
}

/// Parses a history from text; `file` names it in errors and in reports.
pub fn parse(file: &str, text: &str) -> Result<Vec<Op>, Error> {
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = At {
            file: file.to_owned(),
            line: i + 1,
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut op: Op = serde_json::from_str(line).map_err(|e| Error::Parse {
            at: at.clone(),
            what: "history operation",
            message: e.to_string(),
        })?;
        op.at = at;
        validate(&op)?;
        ops.push(op);
    }
    Ok(ops)
}

/// Reads and parses a history file.
pub fn read(path: &Path) -> Result<Vec<Op>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&path.display().to_string(), &text)
}

fn validate(op: &Op) -> Result<(), Error> {
    let missing = |field: &'static str| Error::Invalid {
        at: op.at.clone(),
        message: format!("{:?} {:?} needs `{field}`", op.f, op.kind).to_lowercase(),
    };
    match op.f {
        Function::Enqueue => {
            op.producer.ok_or_else(|| missing("producer"))?;
            op.seq.ok_or_else(|| missing("seq"))?;
            if op.kind == Kind::Ok {
                op.journal_seq.ok_or_else(|| missing("journal_seq"))?;
            }
        }
        Function::Dequeue | Function::Ack => {
            op.consumer.as_ref().ok_or_else(|| missing("consumer"))?;
            if op.kind == Kind::Ok {
                op.producer.ok_or_else(|| missing("producer"))?;
                op.seq.ok_or_else(|| missing("seq"))?;
                op.journal_seq.ok_or_else(|| missing("journal_seq"))?;
            }
        }
    }
    Ok(())
}
