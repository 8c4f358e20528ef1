//! One background thread per process for work that must not run on a producer's or consumer's
//! hot path: unmapping finished segments and pre-faulting newly opened ones.
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
