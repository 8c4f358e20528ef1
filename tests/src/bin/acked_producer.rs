//! Producer of the container cluster test (`.ci/container-cluster.sh`): it records the outcome
//! of every enqueue, so the test can check that no acknowledged message is lost.
//!
//! ```text
//! acked_producer DIR FIRST_ID COUNT [SECS]
//! ```
//!
//! Creates (or opens) the queue at `DIR` and enqueues orders `FIRST_ID..FIRST_ID+COUNT`, for at
//! most `SECS` seconds (default 120), printing one line per outcome, flushed at once:
//!
//! * `ACK seq id`: `enqueue` returned `Ok` (in synchronous mode: the replicas hold it);
//! * `TIMEOUT seq id`: `AckTimeout`, written locally but not acknowledged; it goes on;
//! * `LEASE id`: `LeaseExpired`, refused by the node's lease, nothing written; it goes on after
//!   20 ms;
//! * `FENCED id` / `READONLY id`: the queue is no longer (or not) primary here; it stops;
//! * `ERR id message`: anything else; it stops with exit code 1;
//!
//! and `DONE` when it stops for any reason other than an error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueError, ReplicationError};
use repliq_tests::cluster::{Order, line, order};

fn run(dir: &str, first: u64, count: u64, secs: u64) -> Result<(), String> {
    let mut q = JournalQueue::<Order>::new(dir, 10_000_000).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    for id in first..first.saturating_add(count) {
        if Instant::now() > deadline {
            break;
        }
        match q.enqueue(&order(id)) {
            Ok(seq) => line(&format!("ACK {seq} {id}")),
            Err(QueueError::Replication(ReplicationError::AckTimeout { seq, .. })) => {
                line(&format!("TIMEOUT {seq} {id}"));
            }
            Err(QueueError::Replication(ReplicationError::Fenced { .. })) => {
                line(&format!("FENCED {id}"));
                break;
            }
            Err(QueueError::Replication(ReplicationError::ReadOnlyReplica { .. })) => {
                line(&format!("READONLY {id}"));
                break;
            }
            // Nothing written: the node's lease does not allow writes now (its daemon has not
            // taken or renewed it). It may again, or the queue becomes a replica here.
            Err(QueueError::Replication(ReplicationError::LeaseExpired { .. })) => {
                line(&format!("LEASE {id}"));
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("ERR {id} {e}")),
        }
    }
    line("DONE");
    Ok(())
}

fn parse(args: &[String]) -> Result<(String, u64, u64, u64), String> {
    let num = |s: &String| s.parse::<u64>().map_err(|e| format!("`{s}`: {e}"));
    match args {
        [dir, first, count] => Ok((dir.clone(), num(first)?, num(count)?, 120)),
        [dir, first, count, secs] => Ok((dir.clone(), num(first)?, num(count)?, num(secs)?)),
        _ => Err("usage: acked_producer DIR FIRST_ID COUNT [SECS]".to_owned()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, first, count, secs) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("acked_producer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&dir, first, count, secs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            line(&e);
            ExitCode::FAILURE
        }
    }
}
