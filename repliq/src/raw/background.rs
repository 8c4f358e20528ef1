//! One background thread per process for work that must not run on a producer's or consumer's
//! hot path: unmapping finished segments and pre-faulting newly opened ones.
//!
//! Jobs run in order. The thread is started on first use and lives as long as the process; if
//! it cannot be started, jobs run on the caller's thread (correct, only slower).
//!
//! Background threads run at the lowest priority ([`yield_to_callers`]): they inherit the CPU
//! pinning of the thread that started them (often a pinned producer), and a pre-fault of a whole
//! segment at normal priority held that core for one scheduler slice (milliseconds) whenever the
//! producer woke up: the one-way p99 of a paced producer. At nice 19 a waking producer preempts
//! them at once; they still get every idle moment, and a producer that waits for their result
//! (the spare segment at a roll) leaves them the whole core.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

type Job = Box<dyn FnOnce() + Send + 'static>;

static QUEUE: Mutex<Option<Sender<Job>>> = Mutex::new(None);

/// Runs `job` on the background thread.
pub(crate) fn run(job: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(job);
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    if queue.is_none() {
        let (tx, rx) = channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("repliq-background".into())
            .spawn(move || {
                yield_to_callers();
                for job in rx {
                    job();
                }
            });
        if spawned.is_ok() {
            *queue = Some(tx);
        }
    }
    let job = match queue.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return,
            Err(e) => e.0,
        },
        None => job,
    };
    drop(queue);
    job();
}

/// Lowers the calling thread's scheduling priority to nice 19 (Linux: per thread). Failure is
/// ignored: the thread then runs at its inherited priority, as before.
pub(crate) fn yield_to_callers() {
    // SAFETY: `gettid` has no preconditions and cannot fail. `setpriority` with `PRIO_PROCESS`
    // and a thread ID changes only that thread's nice value (Linux), takes no pointers, and
    // reports errors through its return value, which is ignored (raising one's own nice value
    // needs no privilege; a sandbox that forbids it leaves the priority as it was).
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}
