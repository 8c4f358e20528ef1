//! `repliq`: inspect, verify and tail queue directories.
//!
//! ```text
//! repliq inspect DIR              JSON: type, fingerprint, segments, sequences, cursors, capacity
//! repliq verify DIR               check every record's crc; exit code 1 on corruption
//! repliq tail DIR [--raw] [--from SEQ] [--no-follow]
//!                                 print records as they arrive: sequence, length (and hex with --raw)
//! repliq promote DIR              make a replica the primary of a new epoch (failover)
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
    /// Print records as they arrive.
    Tail {
        /// The queue directory.
        dir: PathBuf,
        /// Also print each payload as hex.
        #[arg(long)]
        raw: bool,
        /// Start at this sequence number (default: the first stored record).
        #[arg(long)]
        from: Option<u64>,
        /// Stop at the current end instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
    /// Make a replica the primary of a new epoch (failover). Prints the new replication state.
    Promote {
        /// The replica's queue directory.
        dir: PathBuf,
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
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { dir } => {
            let info = repliq::inspect(&dir)?;
            let json = serde_json::to_string_pretty(&info)
                .map_err(|e| repliq::QueueError::Other(format!("encoding JSON: {e}")))?;
            println!("{json}");
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
                    println!(
                        "ok: {} records in {} segments ({} abandoned reservations, {} in progress)",
                        report.records, report.segments, report.abandoned, report.in_progress
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ repliq::QueueError::Corrupt { .. }) => {
                    println!("corrupt: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e),
            }
        }
        Command::Tail {
            dir,
            raw,
            from,
            no_follow,
        } => {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repliq: {e}");
            ExitCode::from(2)
        }
    }
}
