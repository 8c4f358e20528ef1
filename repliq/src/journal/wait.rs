//! Waiting without blocking a thread: async tasks that wait for new data, for room or for the
//! replicas' acknowledgement register a [`Waker`] here, and one waiter thread per (queue, word)
//! sleeps on the meta file's futex word for all of them.
//!
//! A task must never sleep in `FUTEX_WAIT` itself (it would block an executor thread). The
//! waiter thread follows the protocol of [`notify`](super::notify): it announces itself in the
//! word's waiter count, re-checks every registered condition, sleeps while the futex word is
//! unchanged (at most [`notify::MAX_SLEEP`](super::notify::MAX_SLEEP), or until the earliest
//! deadline), and then wakes every task, which polls again and re-registers if it still has to
//! wait. Producers and consumers in any process wake it, so a task is woken promptly by another
//! process without burning a core. The thread lingers for a second after the last waiter left,
//! so a busy consumer does not spawn a thread per message.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::{Journal, notify};

/// The futex words of the meta file a task can wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Word {
    /// New records were committed.
    Data,
    /// A consumer cursor moved (room in a full queue).
    Space,
    /// The replicas acknowledged more records.
    Ack,
}

impl Word {
    fn index(self) -> usize {
        match self {
            Word::Data => 0,
            Word::Space => 1,
            Word::Ack => 2,
        }
    }
}

/// A condition a waiting task will re-check when polled; `ready` tells the waiter thread
/// whether it may already hold (then the task is woken without sleeping).
pub(crate) type ReadyFn = Box<dyn Fn() -> bool + Send>;

struct Waiting {
    waker: Waker,
    ready: ReadyFn,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Registry {
    waiting: Vec<Waiting>,
    running: bool,
}

/// How long an idle waiter thread stays for new waiters before it ends.
const LINGER: Duration = Duration::from_secs(1);

/// Per-process registry of the tasks waiting on one queue, one list per [`Word`].
#[derive(Default)]
pub(crate) struct AsyncWaiters {
    lists: [(Mutex<Registry>, Condvar); 3],
}

impl std::fmt::Debug for AsyncWaiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWaiters").finish_non_exhaustive()
    }
}

impl Journal {
    fn words(&self, word: Word) -> (&AtomicU32, &AtomicU32) {
        let meta = &self.meta;
        match word {
            Word::Data => (meta.data_notify(), meta.data_waiters()),
            Word::Space => (meta.space_notify(), meta.space_waiters()),
            Word::Ack => (meta.ack_notify(), meta.ack_waiters()),
        }
    }

    /// Wakes `waker` when `word` is bumped (by any process), when `ready` returns `true`, at
    /// `deadline`, or after at most [`notify::MAX_SLEEP`]. The caller re-checks its condition
    /// after registering, so that progress made in between is not missed.
    pub(crate) fn wake_on(
        self: &Arc<Self>,
        word: Word,
        waker: Waker,
        ready: ReadyFn,
        deadline: Option<Instant>,
    ) {
        let (lock, cv) = &self.waiters.lists[word.index()];
        let mut registry = lock.lock().unwrap_or_else(|p| p.into_inner());
        registry.waiting.push(Waiting {
            waker,
            ready,
            deadline,
        });
        if registry.running {
            cv.notify_one();
            return;
        }
        registry.running = true;
        let journal = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("repliq-waiter".into())
            .spawn(move || waiter_thread(&journal, word));
        if spawned.is_err() {
            // No thread: wake everyone so they poll again rather than hang.
            registry.running = false;
            for w in registry.waiting.drain(..) {
                w.waker.wake();
            }
        }
    }
}

fn waiter_thread(journal: &Journal, word: Word) {
    let (lock, cv) = &journal.waiters.lists[word.index()];
    let (counter, waiters) = journal.words(word);
    let mut idle_since = None::<Instant>;
    loop {
        let earliest = {
            let mut registry = lock.lock().unwrap_or_else(|p| p.into_inner());
            if registry.waiting.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LINGER {
                    registry.running = false;
                    return;
                }
                let _ = cv
                    .wait_timeout(registry, notify::MAX_SLEEP)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            idle_since = None;
            registry.waiting.iter().filter_map(|w| w.deadline).min()
        };
        let sleep = earliest.map_or(notify::MAX_SLEEP, |d| {
            d.saturating_duration_since(Instant::now())
                .min(notify::MAX_SLEEP)
        });
        notify::sleep_announced(counter, waiters, sleep, || {
            let registry = lock.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            !registry
                .waiting
                .iter()
                .any(|w| w.deadline.is_some_and(|d| d <= now) || (w.ready)())
        });
        // Wake everyone: each task polls again and re-registers if it must still wait.
        let drained: Vec<Waiting> = {
            let mut registry = lock.lock().unwrap_or_else(|p| p.into_inner());
            registry.waiting.drain(..).collect()
        };
        for w in drained {
            w.waker.wake();
        }
    }
}

/// One poll of an async wait: `Ready(Ok(Some(r)))` once `check` yields `r`, `Ready(Ok(None))` at
/// `deadline`, otherwise registers the task's waker on `word` (with `ready` as the thread's
/// quick test) and re-checks, so that progress made in between is not missed.
pub(crate) fn poll_until<R>(
    journal: &Arc<Journal>,
    word: Word,
    deadline: Option<Instant>,
    cx: &mut std::task::Context<'_>,
    mut check: impl FnMut() -> crate::Result<Option<R>>,
    ready: impl FnOnce() -> ReadyFn,
) -> std::task::Poll<crate::Result<Option<R>>> {
    use std::task::Poll;
    match check() {
        Ok(None) => {}
        other => return Poll::Ready(other),
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Poll::Ready(Ok(None));
    }
    journal.wake_on(word, cx.waker().clone(), ready(), deadline);
    match check() {
        Ok(None) => Poll::Pending,
        other => Poll::Ready(other),
    }
}
