//! One background thread per process for work that must not run on a producer's or consumer's
//! hot path: unmapping finished segments and pre-faulting pages ahead of producers and readers.
//!
//! Jobs run in order. The thread is started on first use and lives as long as the process; if
//! it cannot be started, jobs run on the caller's thread (correct, only slower).

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
                float_current_thread();
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

/// Lets the calling (background) thread run on every CPU the process's main thread may run on.
///
/// A new thread inherits the CPU affinity of the thread that spawned it. Background threads are
/// spawned by whichever producer or reader first needs one, and latency-sensitive applications
/// pin those threads to a core of their own: the background work (faulting in tens of MiB,
/// unmapping) would then run on exactly the core that must not be disturbed. Best effort: on
/// failure the thread keeps the inherited affinity.
pub(crate) fn float_current_thread() {
    // SAFETY: `cpu_set_t` is plain data for which all-zero bytes is a valid (empty) set;
    // `sched_getaffinity` writes at most `size_of::<cpu_set_t>()` bytes into it and
    // `sched_setaffinity` only reads it. Both take the size we pass and touch no other memory.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}
