//! `repliq`: inspect, verify and tail queue directories.
//!
//! ```text
//! repliq inspect DIR              JSON: type, fingerprint, schema, segments, sequences, cursors
//! repliq verify DIR               check every record's crc; exit code 1 on corruption
//! repliq cat DIR [--from SEQ] [--since UNIX_SECONDS]
//!                                 every stored message as a JSON line (by the queue's schema.json)
//! repliq tail DIR [--json] [--raw] [--from SEQ] [--since UNIX_SECONDS] [--no-follow]
//!                                 print records as they arrive: sequence, length (and hex with
//!                                 --raw), or JSON lines like `cat` with --json
//!
//! The reading commands open the queue's files read-only: they work for a user who may only read
//! them, on a read-only mount, and on a replica while it is being written. A JSON line is
//! `{"seq":N,"time":T,"message":{..}}` (`time`: write time, nanoseconds since the Unix epoch); a
//! record that cannot be decoded is reported on stderr with its file and offset and skipped.
//! repliq promote DIR              make a replica the primary of a new epoch (failover)
//! repliq consumers DIR [--all] [--remove NAME]...
//!                                 list the consumer cursor slots (JSON lines), or remove cursors
//!                                 (their slots are reused by later registrations)
//! ```

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Tools for repliq queue directories.
#[derive(Debug, Parser)]
#[command(name = "repliq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a queue's metadata, segments and consumer cursors as JSON.
    Inspect {
        /// The queue directory.
        dir: PathBuf,
    },
    /// Check every record (header, sequence number, length, crc32c). Exit code 1 on corruption.
    Verify {
        /// The queue directory.
        dir: PathBuf,
    },
    /// Print every stored message as a JSON line, decoded with the queue's schema.
    Cat {
        /// The queue directory.
        dir: PathBuf,
        /// Start at this sequence number (default: the first stored record).
        #[arg(long)]
        from: Option<u64>,
        /// Skip records written before this time (Unix seconds, fractions allowed).
        #[arg(long)]
        since: Option<f64>,
    },
    /// Print records as they arrive.
    Tail {
        /// The queue directory.
        dir: PathBuf,
        /// Print each message as a JSON line, decoded with the queue's schema.
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Also print each payload as hex.
        #[arg(long)]
        raw: bool,
        /// Start at this sequence number (default: the first stored record).
        #[arg(long)]
        from: Option<u64>,
        /// Skip records written before this time (Unix seconds, fractions allowed).
        #[arg(long)]
        since: Option<f64>,
        /// Stop at the current end instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
    /// Make a replica the primary of a new epoch (failover). Prints the new replication state.
    Promote {
        /// The replica's queue directory.
        dir: PathBuf,
    },
    /// List a queue's consumer cursor slots as JSON lines (used ones unless --all), or remove
    /// consumer cursors: a removed cursor holds back nothing, and its slot is reused.
    Consumers {
        /// The queue directory.
        dir: PathBuf,
        /// Also list free slots.
        #[arg(long)]
        all: bool,
        /// Remove this consumer cursor (repeatable). Exit code 1 if one does not exist.
        #[arg(long, value_name = "NAME")]
        remove: Vec<String>,
    },
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn run(cli: Cli) -> repliq::Result<ExitCode> {
    match cli.command {
        Command::Promote { dir } => {
            let state = repliq::replication::ReplicationState::promote(&dir)?;
            let json = serde_json::to_string_pretty(&state)
                .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?;
            print_line(&json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Consumers { dir, all, remove } => {
            if !remove.is_empty() {
                let mut missing = false;
                for name in &remove {
                    if repliq::remove_consumer(&dir, name)? {
                        print_line(&format!("removed {name}"));
                    } else {
                        eprintln!("repliq: no consumer {name:?} in {}", dir.display());
                        missing = true;
                    }
                }
                return Ok(if missing {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            for slot in repliq::consumer_slots(&dir)? {
                if all || slot.state != "free" {
                    let json = serde_json::to_string(&slot)
                        .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?;
                    print_line(&json);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { dir } => {
            let info = repliq::inspect(&dir)?;
            let mut value = serde_json::to_value(&info)
                .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?;
            // The message type's descriptor (null for a queue without schema.json).
            let schema = repliq::read_schema(&dir)?;
            if let serde_json::Value::Object(map) = &mut value {
                map.insert(
                    "schema".into(),
                    serde_json::to_value(&schema).unwrap_or_default(),
                );
            }
            let json = serde_json::to_string_pretty(&value)
                .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?;
            print_line(&json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => {
            let bar = std::io::stderr().is_terminal();
            let result = repliq::verify(&dir, |done, total| {
                if bar {
                    let width = 40;
                    let filled = (done * width).checked_div(total).unwrap_or(width);
                    eprint!(
                        "\r[{}{}] {done}/{total} segments",
                        "#".repeat(filled),
                        " ".repeat(width - filled)
                    );
                }
            });
            if bar {
                eprintln!();
            }
            match result {
                Ok(report) => {
                    print_line(&format!(
                        "ok: {} records in {} segments ({} abandoned reservations, {} in progress)",
                        report.records, report.segments, report.abandoned, report.in_progress
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ repliq::QueueError::Corrupt { .. }) => {
                    print_line(&format!("corrupt: {e}"));
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e),
            }
        }
        Command::Cat { dir, from, since } => print_json(&dir, from, since, false),
        Command::Tail {
            dir,
            json: true,
            from,
            since,
            no_follow,
            ..
        } => print_json(&dir, from, since, !no_follow),
        Command::Tail {
            dir,
            raw,
            from,
            since,
            no_follow,
            json: false,
        } => {
            let since = since_nanos(since);
            let mut tailer = repliq::RawTailer::open(&dir, from)?;
            let stdout = std::io::stdout();
            loop {
                let next = if no_follow {
                    tailer.try_next()?
                } else {
                    tailer.next_timeout(Duration::from_secs(1))?
                };
                let Some(rec) = next else {
                    if no_follow {
                        return Ok(ExitCode::SUCCESS);
                    }
                    continue;
                };
                if rec.time_unix_nanos < since {
                    continue;
                }
                let mut out = stdout.lock();
                let written = if raw {
                    writeln!(
                        out,
                        "{} {} {}",
                        rec.seq,
                        rec.payload.len(),
                        hex(&rec.payload)
                    )
                } else {
                    writeln!(out, "{} {}", rec.seq, rec.payload.len())
                };
                if written.and_then(|()| out.flush()).is_err() {
                    // Reader went away (e.g. `| head`).
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// Prints `text` and a newline on standard output; a reader that went away (`repliq inspect DIR
/// | head`) ends the output quietly instead of a panic on the broken pipe.
fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// `--since` in nanoseconds since the Unix epoch (0 without it).
fn since_nanos(since: Option<f64>) -> u64 {
    since.map_or(0, |s| (s.max(0.0) * 1e9) as u64)
}

/// `repliq cat` and `repliq tail --json`: each record as `{"seq","time","message"}` on a line.
/// Records that cannot be decoded are reported on stderr (file, offset, reason) and skipped.
fn print_json(
    dir: &std::path::Path,
    from: Option<u64>,
    since: Option<f64>,
    follow: bool,
) -> repliq::Result<ExitCode> {
    let Some(schema) = repliq::read_schema(dir)? else {
        return Err(repliq::QueueError::Other(format!(
            "{} has no schema.json (created by a repliq without schema files, and not opened by a \
             typed handle since); `repliq tail --raw` prints the bytes",
            dir.display()
        )));
    };
    let since = since_nanos(since);
    let mut tailer = repliq::RawTailer::open(dir, from)?;
    let stdout = std::io::stdout();
    let mut damaged = false;
    loop {
        let next = if follow {
            tailer.next_timeout(Duration::from_secs(1))
        } else {
            tailer.try_next()
        };
        let next = match next {
            Ok(next) => next,
            Err(e @ repliq::QueueError::Corrupt { .. }) => {
                // The error names the file and offset. A record whose checksum alone is wrong
                // is skipped; structural damage ends the walk.
                damaged = true;
                if tailer.skip_damaged()? {
                    eprintln!("repliq: record skipped: {e}");
                    continue;
                }
                eprintln!("repliq: {e}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e),
        };
        let Some(rec) = next else {
            if follow {
                continue;
            }
            return Ok(if damaged {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        };
        if rec.time_unix_nanos < since {
            continue;
        }
        let message = match repliq::descriptor::to_json(&schema.root, &rec.payload) {
            Ok(m) => m,
            Err(e) => {
                damaged = true;
                eprintln!(
                    "repliq: {} offset {}: record {} ({} bytes) skipped: {e}",
                    rec.file.display(),
                    rec.offset,
                    rec.seq,
                    rec.payload.len()
                );
                continue;
            }
        };
        let line = serde_json::json!({
            "seq": rec.seq,
            "time": rec.time_unix_nanos,
            "message": message,
        });
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Reader went away (e.g. `| head`).
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repliq: {e}");
            ExitCode::from(2)
        }
    }
}
