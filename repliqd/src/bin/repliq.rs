//! `repliq`: the command-line tool for repliq queue directories (inspect, verify, read, promote).
//!
//! ```text
//! repliq inspect DIR              JSON: type, fingerprint, schema, segments, sequences, cursors
//! repliq verify DIR               check every record's crc; exit code 1 on corruption
//! repliq cat DIR [--from SEQ] [--since UNIX_SECONDS] [--rfc3339] [--raw]
//!                                 every stored message as a JSON line (by the queue's schema.json)
//! repliq tail DIR [--from SEQ] [--since UNIX_SECONDS] [--rfc3339] [--raw] [--no-follow]
//!                                 the same, then follows the queue as records arrive
//! repliq promote DIR              make a replica the primary of a new epoch (failover)
//! repliq top [--url URL] [--once] [--json] [--interval SECONDS]
//!                                 a node's queues, rates, backlogs, replicas, epochs, failovers
//!                                 (from a running repliqd's /api/v1/status), refreshed
//! ```
//!
//! The reading commands open the queue's files read-only: they work for a user who may only read
//! them, on a read-only mount, and on a replica while it is being written. A JSON line is
//! `{"seq":N,"time":T,"message":{..}}` (`time`: write time, nanoseconds since the Unix epoch, or
//! an RFC 3339 string in UTC with `--rfc3339`); a record that cannot be decoded is reported on
//! stderr with its file and offset and skipped. `--raw` prints `SEQ LEN HEX` lines instead (with
//! `--rfc3339`: `SEQ TIME LEN HEX`); a queue without `schema.json` (written by a repliq older than
//! schema files) is printed that way too, with a note on stderr.
//! repliq promote DIR              make a replica the primary of a new epoch (failover)
//! repliq consumers DIR [--all] [--remove NAME]...
//!                                 list the consumer cursor slots (JSON lines), or remove cursors
//!                                 (their slots are reused by later registrations)
//! repliq produce --remote ADDR QUEUE [--producer-id ID] [--epoch N] [--batch N] [TLS flags]
//!                                 JSON lines from stdin to a queue through a node (exactly once
//!                                 per producer sequence); a summary on stderr
//! repliq consume --remote ADDR QUEUE --consumer NAME [--count N] [--timeout SECONDS] ...
//!                                 a durable consumer's records as JSON lines, acknowledged
//!                                 once printed
//! ```
//!
//! `produce` and `consume` talk to a running `repliqd` with `server.clients` on (from any host),
//! and use the queue's schema from the node (docs/CLIENTS.md, "The command line").

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Inspect, verify, read and promote repliq queue directories (the node daemon is `repliqd`).
///
/// Every command takes a queue directory: the one a producer created with
/// `QueueOptions::create` / `ReplicatedQueueImpl::new`, or a replica's under the daemon's
/// persistence path. Reading needs only read permission on the files.
#[derive(Debug, Parser)]
#[command(name = "repliq", version)]
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
    /// Print every stored message as a JSON line, decoded with the queue's schema.json.
    Cat {
        /// The queue directory.
        dir: PathBuf,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Print every stored message like `cat`, then follow the queue as records arrive.
    Tail {
        /// The queue directory.
        dir: PathBuf,
        #[command(flatten)]
        print: PrintArgs,
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
    /// Write JSON lines from standard input to a queue through a node (`server.clients`), each
    /// encoded with the queue's schema, in batches by an idempotent producer. Prints a summary
    /// on stderr. A line that is not a message of the queue's type stops it (exit code 1): the
    /// lines before it are sent, nothing from it on.
    Produce(repliqd::cli::produce::ProduceArgs),
    /// Print a durable consumer's records as JSON lines (`{"seq","delivery_count","message"}`)
    /// through a node (`server.clients`), acknowledging each batch once it is printed. Prints a
    /// summary on stderr.
    Consume(repliqd::cli::consume::ConsumeArgs),
    /// Show a running daemon's queues, enqueue and dequeue rates, backlog per consumer, replicas
    /// with their lag, epochs, primaries and recent failovers, refreshed every second (the same
    /// as its web console at /ui; read from its /api/v1/status).
    Top {
        /// The daemon's HTTP address (`server.http_listen`).
        #[arg(long, default_value_t = default_url())]
        url: String,
        /// Print one frame and exit (exit code 2 if the daemon cannot be read).
        #[arg(long)]
        once: bool,
        /// Print the status document as JSON (one line per refresh) instead of tables.
        #[arg(long)]
        json: bool,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
}

fn default_url() -> String {
    format!("http://127.0.0.1:{}", repliqd::config::DEFAULT_HTTP_PORT)
}

/// `--interval`: a number of seconds from 0.1 to one day.
fn parse_interval(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=86_400.0).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{secs} is outside 0.1..=86400 seconds"))
    }
}

/// How `cat` and `tail` select and print records.
#[derive(Debug, clap::Args)]
struct PrintArgs {
    /// Print `SEQ LEN HEX` lines (the payload's bytes) instead of JSON.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Require JSON: fail instead of falling back to `--raw` lines when the queue has no
    /// schema.json (JSON is the default whenever it has one).
    #[arg(long)]
    json: bool,
    /// Print times as RFC 3339 in UTC (`2026-12-06T05:10:02.123456789Z`) instead of
    /// nanoseconds since the Unix epoch.
    #[arg(long)]
    rfc3339: bool,
    /// Start at this sequence number (default: the first stored record).
    #[arg(long)]
    from: Option<u64>,
    /// Skip records written before this time (Unix seconds, fractions allowed).
    #[arg(long)]
    since: Option<f64>,
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
        Command::Top {
            url,
            once,
            json,
            interval,
        } => top(&url, once, json, Duration::from_secs_f64(interval)),
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
        Command::Produce(args) => Ok(remote_produce(&args)),
        Command::Consume(args) => Ok(remote_consume(&args)),
        Command::Cat { dir, print } => print_records(&dir, &print, false),
        Command::Tail {
            dir,
            print,
            no_follow,
        } => print_records(&dir, &print, !no_follow),
    }
}

/// `repliq produce`: the summary and any error on stderr; exit code 1 for a bad line, 2 for
/// other failures.
fn remote_produce(args: &repliqd::cli::produce::ProduceArgs) -> ExitCode {
    use repliqd::cli::{CliError, produce};
    let mut summary = produce::Summary::default();
    let result = repliqd::cli::runtime().and_then(|rt| {
        let input = std::io::BufReader::new(std::io::stdin());
        rt.block_on(produce::run(args, input, &mut summary))
    });
    if !summary.node.is_empty() {
        eprintln!("repliq: {summary}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repliq: {e}");
            ExitCode::from(if matches!(e, CliError::BadLine { .. }) {
                1
            } else {
                2
            })
        }
    }
}

/// `repliq consume`: records on stdout, the summary and any error on stderr; exit code 1 for a
/// record the schema cannot render, 2 for other failures.
fn remote_consume(args: &repliqd::cli::consume::ConsumeArgs) -> ExitCode {
    use repliqd::cli::{CliError, consume};
    let mut summary = consume::Summary::default();
    let mut out = std::io::stdout().lock();
    let result = repliqd::cli::runtime()
        .and_then(|rt| rt.block_on(consume::run(args, &mut out, &mut summary)));
    if !summary.node.is_empty() {
        eprintln!("repliq: {summary}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repliq: {e}");
            ExitCode::from(if matches!(e, CliError::Render { .. }) {
                1
            } else {
                2
            })
        }
    }
}

/// `repliq top`: one frame (`--once`) or a frame every `interval`, as tables or JSON lines. On a
/// terminal each frame replaces the last; an unreadable daemon shows as an error line and is
/// asked again at the next refresh (with `--once`, exit code 2).
fn top(url: &str, once: bool, json: bool, interval: Duration) -> repliq::Result<ExitCode> {
    use repliqd::ui::terminal;
    let timeout = Duration::from_secs(5);
    let terminal = std::io::stdout().is_terminal() && !once && !json;
    loop {
        let frame = match terminal::fetch_status(url, timeout) {
            Ok(status) if json => serde_json::to_string(&status)
                .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?,
            Ok(status) => terminal::render(&status),
            Err(e) if once => return Err(repliq::QueueError::Other(e.to_string())),
            Err(e) => {
                eprintln!("repliq: {e}");
                std::thread::sleep(interval);
                continue;
            }
        };
        let mut out = std::io::stdout().lock();
        // On a terminal: home the cursor and clear the screen, so each frame replaces the last.
        let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
        let gap = if json || once || terminal { "" } else { "\n" };
        if write!(out, "{clear}{frame}{gap}")
            .and_then(|()| if json { writeln!(out) } else { Ok(()) })
            .and_then(|()| out.flush())
            .is_err()
        {
            // Reader went away (e.g. `| head`).
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
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

/// A record's write time as the user asked for it: nanoseconds, or RFC 3339 in UTC.
fn time_value(nanos: u64, rfc3339: bool) -> serde_json::Value {
    if rfc3339 {
        serde_json::Value::String(format_rfc3339(nanos))
    } else {
        serde_json::Value::from(nanos)
    }
}

/// `nanos` since the Unix epoch as RFC 3339 in UTC with nanoseconds
/// (`1970-01-01T00:00:00.000000000Z`). Days to a civil date by the proleptic Gregorian
/// calendar's 400-year cycle (146,097 days), counted from 0000-03-01 so that the leap day is the
/// last day of a cycle's year.
fn format_rfc3339(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since 0000-03-01: 1970-01-01 is day 719,468 of that count.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the 400-year era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{frac:09}Z")
}

/// `repliq cat` and `repliq tail`: each record as `{"seq","time","message"}` on a line, decoded
/// with the queue's schema.json, or as `SEQ [TIME] LEN HEX` with `--raw` (and for a queue
/// without schema.json unless `--json` insists). Records that cannot be read are reported on
/// stderr (file, offset, reason) and skipped.
fn print_records(
    dir: &std::path::Path,
    args: &PrintArgs,
    follow: bool,
) -> repliq::Result<ExitCode> {
    let schema = if args.raw {
        None
    } else {
        match repliq::read_schema(dir)? {
            Some(schema) => Some(schema),
            None if args.json => {
                return Err(repliq::QueueError::Other(format!(
                    "{} has no schema.json (created by a repliq without schema files, and not \
                     opened by a typed handle since); `--raw` prints the bytes",
                    dir.display()
                )));
            }
            None => {
                eprintln!(
                    "repliq: {} has no schema.json (written by a repliq without schema files); \
                     printing `SEQ LEN HEX` lines as with --raw",
                    dir.display()
                );
                None
            }
        }
    };
    let since = since_nanos(args.since);
    let mut tailer = repliq::RawTailer::open(dir, args.from)?;
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
        let line = match &schema {
            None if args.rfc3339 => format!(
                "{} {} {} {}",
                rec.seq,
                format_rfc3339(rec.time_unix_nanos),
                rec.payload.len(),
                hex(&rec.payload)
            ),
            None => format!("{} {} {}", rec.seq, rec.payload.len(), hex(&rec.payload)),
            Some(schema) => match repliq::descriptor::to_json(&schema.root, &rec.payload) {
                Ok(message) => serde_json::json!({
                    "seq": rec.seq,
                    "time": time_value(rec.time_unix_nanos, args.rfc3339),
                    "message": message,
                })
                .to_string(),
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
            },
        };
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

#[cfg(test)]
mod tests {
    use super::format_rfc3339;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day of a century divisible by 400) 12:34:56.000000789
        assert_eq!(
            format_rfc3339(951_827_696_000_000_789),
            "2000-02-29T12:34:56.000000789Z"
        );
        // The last nanosecond of 2100-02-28 (2100 is not a leap year): next is March 1st.
        assert_eq!(
            format_rfc3339(4_107_542_399_999_999_999),
            "2100-02-28T23:59:59.999999999Z"
        );
        assert_eq!(
            format_rfc3339(4_107_542_400_000_000_000),
            "2100-03-01T00:00:00.000000000Z"
        );
        // 2026-12-31T23:59:59Z and the next second.
        assert_eq!(
            format_rfc3339(1_798_761_599_000_000_000),
            "2026-12-31T23:59:59.000000000Z"
        );
        assert_eq!(
            format_rfc3339(1_798_761_600_000_000_000),
            "2027-01-01T00:00:00.000000000Z"
        );
        // u64::MAX nanoseconds is in 2554.
        assert!(format_rfc3339(u64::MAX).starts_with("2554-07-21T23:34:33.709551615Z"));
    }
}
