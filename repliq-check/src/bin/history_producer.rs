//! Producer of the fault schedules (`.ci/fault-schedules.sh`): enqueues and writes the history
//! of every enqueue (`docs/CHECKER.md`) on stdout, one flushed line per event.
//!
//! ```text
//! history_producer DIR NODE PRODUCER COUNT SECS [INTERVAL_MS]
//! ```
//!
//! Opens (or creates) the queue at `DIR` on node `NODE` and enqueues messages `PRODUCER`, seq
//! `0..COUNT` for at most `SECS` seconds, waiting `INTERVAL_MS` (default 0) between enqueues. Each
//! enqueue is an `invoke` line, then `ok` (acknowledged), `unknown` (`AckTimeout`: written here,
//! not acknowledged; it goes on) or `fail` (`Fenced`, `ReadOnlyReplica`: refused before writing;
//! it stops; `LeaseExpired`: refused before writing, it goes on after 20 ms). Any other error is `unknown` and it stops. The epoch on each line is the one in the
//! queue's `replication.json` just before the invocation and just after the completion.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueError, ReplicationError};
use repliq_check::client::{emit, epoch, now_ns};
use repliq_check::{Function, Kind, Message, Op};

struct Args {
    dir: PathBuf,
    node: String,
    producer: u64,
    count: u64,
    secs: u64,
    interval: Duration,
}

fn run(a: &Args) -> Result<(), String> {
    let mut q = JournalQueue::<Message>::new(&a.dir, 10_000_000)
        .map_err(|e| format!("opening {}: {e}", a.dir.display()))?;
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let op = |kind: Kind, seq: u64, epoch: Option<u64>| Op {
        kind,
        f: Function::Enqueue,
        producer: Some(a.producer),
        seq: Some(seq),
        consumer: None,
        node: a.node.clone(),
        epoch,
        time: now_ns(),
        journal_seq: None,
        error: None,
        at: Default::default(),
    };
    for seq in 0..a.count {
        if Instant::now() > deadline {
            break;
        }
        emit(&op(Kind::Invoke, seq, epoch(&a.dir)));
        let result = q.enqueue(&Message::new(a.producer, seq));
        let mut done = op(Kind::Ok, seq, epoch(&a.dir));
        let stop = match result {
            Ok(journal_seq) => {
                done.journal_seq = Some(journal_seq);
                false
            }
            Err(QueueError::Replication(e @ ReplicationError::AckTimeout { .. })) => {
                done.kind = Kind::Unknown;
                done.error = Some(e.to_string());
                false
            }
            Err(QueueError::Replication(
                e @ (ReplicationError::Fenced { .. } | ReplicationError::ReadOnlyReplica { .. }),
            )) => {
                done.kind = Kind::Fail;
                done.error = Some(e.to_string());
                true
            }
            // Refused before writing: the node's lease does not allow writes now (a daemon that
            // has not taken or renewed it yet, or a node resumed after its lease ran out). It
            // may again: go on after a pause.
            Err(QueueError::Replication(e @ ReplicationError::LeaseExpired { .. })) => {
                done.kind = Kind::Fail;
                done.error = Some(e.to_string());
                std::thread::sleep(Duration::from_millis(20));
                false
            }
            Err(e) => {
                done.kind = Kind::Unknown;
                done.error = Some(e.to_string());
                true
            }
        };
        emit(&done);
        if stop {
            break;
        }
        if !a.interval.is_zero() {
            std::thread::sleep(a.interval);
        }
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<Args, String> {
    let num = |s: &String| s.parse::<u64>().map_err(|e| format!("`{s}`: {e}"));
    let (dir, node, producer, count, secs, interval) = match args {
        [d, n, p, c, s] => (d, n, p, c, s, 0),
        [d, n, p, c, s, i] => (d, n, p, c, s, num(i)?),
        _ => {
            return Err(
                "usage: history_producer DIR NODE PRODUCER COUNT SECS [INTERVAL_MS]".to_owned(),
            );
        }
    };
    Ok(Args {
        dir: PathBuf::from(dir),
        node: node.clone(),
        producer: num(producer)?,
        count: num(count)?,
        secs: num(secs)?,
        interval: Duration::from_millis(interval),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("history_producer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("history_producer: {e}");
            ExitCode::FAILURE
        }
    }
}
