//! Consumer of the fault schedules (`.ci/fault-schedules.sh`): dequeues with a durable cursor
//! and writes the history of every delivery and acknowledgement (`docs/CHECKER.md`) on stdout,
//! one flushed line per event.
//!
//! ```text
//! history_consumer DIR NODE CONSUMER SECS [drain]
//! ```
//!
//! Opens the queue at `DIR` on node `NODE` as consumer `CONSUMER` (the cursor in the queue's
//! meta file, created at the first record still stored if new) and, for at most `SECS` seconds,
//! takes each next message in place (`peek`): an `ok` `dequeue` line with the message's key and
//! sequence number, then the cursor moved past it (`commit`) and an `ok` `ack` line. A consumer
//! killed between the two gets the message again (at-least-once: a redelivery before the ack);
//! one killed after the commit never does. Without `drain` it waits for more messages until
//! `SECS` have passed; with `drain` it stops at the first moment there is none (run when no
//! producer writes any more: it has then read the node's journal to its end) and exits with
//! code 3 if `SECS` passed first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use repliq::{QueueOptions, StartAt};
use repliq_check::client::{emit, epoch, now_ns};
use repliq_check::{Function, Kind, Message, Op};

struct Args {
    dir: PathBuf,
    node: String,
    consumer: String,
    secs: u64,
    drain: bool,
}

/// Whether the consumer read to the end (`drain`) or ran out its time.
enum End {
    Drained,
    Time,
}

fn run(a: &Args) -> Result<End, String> {
    let mut q = QueueOptions::new()
        .consumer(a.consumer.as_str())
        .start_at(StartAt::Earliest)
        .open::<Message>(&a.dir)
        .map_err(|e| format!("opening {} as {}: {e}", a.dir.display(), a.consumer))?;
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let op = |f: Function, key: (u64, u64), journal_seq: u64| Op {
        kind: Kind::Ok,
        f,
        producer: Some(key.0),
        seq: Some(key.1),
        consumer: Some(a.consumer.clone()),
        node: a.node.clone(),
        epoch: epoch(&a.dir),
        time: now_ns(),
        journal_seq: Some(journal_seq),
        error: None,
        at: Default::default(),
    };
    while Instant::now() < deadline {
        let next = q
            .peek()
            .map_err(|e| format!("reading {}: {e}", a.dir.display()))?;
        let Some(guard) = next else {
            if a.drain {
                return Ok(End::Drained);
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let key = (guard.producer.to_native(), guard.seq.to_native());
        let journal_seq = guard.seq();
        emit(&op(Function::Dequeue, key, journal_seq));
        // `false`: another handle of this name took it first (a consumer of the same name
        // left running on this node): not acknowledged here.
        if guard.commit() {
            emit(&op(Function::Ack, key, journal_seq));
        }
    }
    Ok(End::Time)
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (dir, node, consumer, secs, drain) = match args {
        [d, n, c, s] => (d, n, c, s, false),
        [d, n, c, s, m] if m == "drain" => (d, n, c, s, true),
        _ => {
            return Err("usage: history_consumer DIR NODE CONSUMER SECS [drain]".to_owned());
        }
    };
    Ok(Args {
        dir: PathBuf::from(dir),
        node: node.clone(),
        consumer: consumer.clone(),
        secs: secs.parse().map_err(|e| format!("`{secs}`: {e}"))?,
        drain,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("history_consumer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(End::Time) if a.drain => {
            eprintln!(
                "history_consumer: {} not drained within {} s",
                a.dir.display(),
                a.secs
            );
            ExitCode::from(3)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("history_consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
