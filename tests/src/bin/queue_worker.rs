//! Helper process for the multi-process queue tests (`tests/tests/queue_*.rs`).
//!
//! ```text
//! queue_worker produce DIR PRODUCER COUNT [PAUSE_US]
//!                                              enqueue COUNT messages, print "PRODUCER N" after each Ok
//! queue_worker consume DIR CONSUMER            dequeue (waiting) until a stop message; print "P N" per message
//! queue_worker wait DIR CONSUMER sync|async    wait for one message, print it
//! queue_worker peek-and-die DIR CONSUMER       print the next message in place, then abort
//! queue_worker produce-wait DIR PRODUCER COUNT like produce, waiting for room when full
//! queue_worker create DIR CAPACITY             create the queue (used by the container smoke test)
//! queue_worker deliver DIR CONSUMER            async at-least-once consumer: per message print
//!                                              "got SEQ P N ok|bad", then read a stdin line: "ack"
//!                                              acknowledges (prints "acked SEQ true|false"); EOF,
//!                                              or no message for 2 s, ends
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use repliq::{JournalQueue, QueueError, QueueOptions, ReplicatedQueueImpl};

/// The message of the multi-process tests; `tests/tests/queue_multiprocess.rs` has a twin.
#[repliq::message(name = "tests.Work")]
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Producer id; `u32::MAX` asks a consumer to stop.
    pub producer: u32,
    /// Per-producer counter, from 0.
    pub n: u64,
    /// A pattern derived from (producer, n), to detect torn or mixed-up records.
    pub body: Vec<u8>,
}

/// The body pattern for (producer, n).
pub fn body(producer: u32, n: u64) -> Vec<u8> {
    let len = (n % 61) as usize + (producer % 7) as usize;
    (0..len)
        .map(|i| (i as u64 ^ n ^ u64::from(producer)) as u8)
        .collect()
}

/// Opens the queue; with `REPLIQ_WORKER_RETAIN=1` in the environment this handle's producers
/// run retention (delete, or recycle, consumed segments).
fn open(dir: &str, consumer: &str) -> Result<JournalQueue<Work>, QueueError> {
    QueueOptions::new()
        .consumer(consumer)
        .delete_consumed_segments(
            std::env::var_os("REPLIQ_WORKER_RETAIN").is_some_and(|v| v == "1"),
        )
        .open(dir)
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `fut` on this thread, parking between wake-ups.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let out = std::io::stdout();
    match args {
        [cmd, dir, producer, count, rest @ ..] if cmd == "produce" && rest.len() <= 1 => {
            let producer: u32 = producer.parse()?;
            let count: u64 = count.parse()?;
            let pause = match rest {
                [us] => Duration::from_micros(us.parse()?),
                _ => Duration::ZERO,
            };
            let mut q = open(dir, "default")?;
            for n in 0..count {
                let seq = q.enqueue(&Work {
                    producer,
                    n,
                    body: body(producer, n),
                })?;
                let mut out = out.lock();
                writeln!(out, "{producer} {n} {seq}")?;
                out.flush()?;
                drop(out);
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
        }
        [cmd, dir, consumer] if cmd == "consume" => {
            let mut q = open(dir, consumer)?;
            let mut out = std::io::BufWriter::new(out.lock());
            loop {
                let Some(w) = q.dequeue_wait(Some(Duration::from_secs(60)))? else {
                    return Err("no message for 60 s".into());
                };
                if w.producer == u32::MAX {
                    break;
                }
                if w.body != body(w.producer, w.n) {
                    return Err(format!("bad body in {} {}", w.producer, w.n).into());
                }
                writeln!(out, "{} {}", w.producer, w.n)?;
            }
            out.flush()?;
        }
        [cmd, dir, producer, count] if cmd == "produce-wait" => {
            // Like `produce`, but waits for room when the queue is full.
            let producer: u32 = producer.parse()?;
            let count: u64 = count.parse()?;
            let mut q = open(dir, "default")?;
            for n in 0..count {
                let work = Work {
                    producer,
                    n,
                    body: body(producer, n),
                };
                q.enqueue_wait(&work, Some(Duration::from_secs(60)))?;
                println!("{producer} {n}");
            }
        }
        [cmd, dir, consumer] if cmd == "peek-and-die" => {
            // Looks at the next message in place and dies before consuming it.
            let mut q = open(dir, consumer)?;
            let guard = q.peek()?.ok_or("no message to peek at")?;
            println!("{} {}", guard.producer, guard.n);
            std::process::abort();
        }
        [cmd, dir, consumer, mode] if cmd == "wait" => {
            let mut q = open(dir, consumer)?;
            println!("ready");
            let w = if mode == "async" {
                block_on(q.recv())?
            } else {
                q.dequeue_wait(Some(Duration::from_secs(60)))?
                    .ok_or("no message for 60 s")?
            };
            println!("{} {}", w.producer, w.n);
        }
        [cmd, dir, consumer] if cmd == "deliver" => {
            let q = ReplicatedQueueImpl::<Work>::open_with(
                dir,
                QueueOptions::new().consumer(consumer.as_str()),
            )?;
            let mut line = String::new();
            loop {
                let Some(d) = block_on(q.recv_delivery_timeout(Duration::from_secs(2)))? else {
                    return Ok(()); // drained
                };
                let ok = if d.body == body(d.producer, d.n) {
                    "ok"
                } else {
                    "bad"
                };
                {
                    let mut out = out.lock();
                    writeln!(out, "got {} {} {} {ok}", d.seq(), d.producer, d.n)?;
                    out.flush()?;
                }
                line.clear();
                if std::io::stdin().read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line.trim() != "ack" {
                    return Err(format!("unknown command {line:?}").into());
                }
                let seq = d.seq();
                let acked = d.ack();
                let mut out = out.lock();
                writeln!(out, "acked {seq} {acked}")?;
                out.flush()?;
            }
        }
        [cmd, dir, capacity] if cmd == "create" => {
            QueueOptions::new()
                .capacity(capacity.parse()?)
                .create::<Work>(dir)?;
        }
        _ => return Err(format!("bad arguments: {args:?}").into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_worker {}: {e}", args.join(" "));
            ExitCode::FAILURE
        }
    }
}
