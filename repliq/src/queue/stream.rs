//! Awaiting receive: [`Recv`] futures and the [`MessageStream`].
//!
//! A task must not block in `FUTEX_WAIT`, so waiting tasks register their `Waker` with one
//! waiter thread per open queue (started on demand, gone when nobody waits). The thread
//! announces itself in the meta file's waiter count, sleeps on the data futex and wakes the tasks
//! when a producer in any process commits (or after at most 100 ms, as a safety net).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::JournalQueue;
use crate::journal::{Journal, Probe, notify};
use crate::raw::futex;
use crate::{Message, Result};

#[derive(Debug, Default)]
struct Registry {
    waiting: Vec<(Waker, Probe)>,
    running: bool,
}

/// Per-process registry of tasks waiting on one queue directory.
#[derive(Debug, Default)]
pub(crate) struct AsyncWaiters {
    state: Mutex<Registry>,
}

impl AsyncWaiters {
    fn register(journal: &Arc<Journal>, waker: Waker, probe: Probe) {
        let this = journal.async_waiters();
        let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting.push((waker, probe));
        if !state.running {
            state.running = true;
            let journal = journal.clone();
            let spawned = std::thread::Builder::new()
                .name("repliq-waiter".into())
                .spawn(move || waiter_thread(journal));
            if spawned.is_err() {
                // No thread: wake everyone so they poll again rather than hang.
                state.running = false;
                for (w, _) in state.waiting.drain(..) {
                    w.wake();
                }
            }
        }
    }
}

fn waiter_thread(journal: Arc<Journal>) {
    let this = journal.async_waiters();
    let meta = &journal.meta;
    loop {
        {
            let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.waiting.is_empty() {
                state.running = false;
                return;
            }
        }
        notify::join(meta.data_waiters());
        fence(Ordering::SeqCst);
        let seen = meta.data_notify().load(Ordering::SeqCst);
        let any_ready = {
            let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
            let before = state.waiting.len();
            state.waiting.retain(|(w, p)| {
                if p.changed() {
                    w.wake_by_ref();
                    false
                } else {
                    true
                }
            });
            state.waiting.len() != before
        };
        if !any_ready {
            futex::wait(meta.data_notify(), seen, notify::MAX_SLEEP);
        }
        notify::leave(meta.data_waiters());
        // Wake everyone: each task polls again and re-registers if there is still nothing.
        let drained: Vec<_> = {
            let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
            state.waiting.drain(..).collect()
        };
        for (w, _) in drained {
            w.wake();
        }
    }
}

fn poll_next<T: Message>(queue: &mut JournalQueue<T>, cx: &mut Context<'_>) -> Poll<Result<T>> {
    match queue.dequeue() {
        Ok(Some(v)) => return Poll::Ready(Ok(v)),
        Err(e) => return Poll::Ready(Err(e)),
        Ok(None) => {}
    }
    let Some(probe) = queue.reader_probe() else {
        cx.waker().wake_by_ref();
        return Poll::Pending;
    };
    AsyncWaiters::register(queue.journal(), cx.waker().clone(), probe);
    // Re-check after registering, so a commit in between is not missed.
    match queue.dequeue() {
        Ok(Some(v)) => Poll::Ready(Ok(v)),
        Err(e) => Poll::Ready(Err(e)),
        Ok(None) => Poll::Pending,
    }
}

/// The future returned by [`JournalQueue::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, T> {
    queue: &'a mut JournalQueue<T>,
}

impl<T: Message> Future for Recv<'_, T> {
    type Output = Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        poll_next(self.queue, cx)
    }
}

/// The messages of a queue for one consumer, as a [`futures::Stream`] that never ends (it waits
/// for more). Returned by [`JournalQueue::stream`].
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct MessageStream<'a, T> {
    queue: &'a mut JournalQueue<T>,
}

impl<T: Message> futures::Stream for MessageStream<'_, T> {
    type Item = Result<T>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        poll_next(self.queue, cx).map(Some)
    }
}

impl<T: Message> JournalQueue<T> {
    /// Waits for the next message without blocking the thread (for async code; any executor).
    /// Woken by producers in any process.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::dequeue`].
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { queue: self }
    }

    /// This handle's messages as a never-ending [`futures::Stream`].
    pub fn stream(&mut self) -> MessageStream<'_, T> {
        MessageStream { queue: self }
    }
}
