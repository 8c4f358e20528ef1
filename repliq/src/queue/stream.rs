//! Awaiting receive on the synchronous handle: [`Recv`] futures and the [`MessageStream`].
//!
//! A task must not block in `FUTEX_WAIT`: waiting tasks register their `Waker` with the
//! journal's waiter thread (`journal::wait`), which sleeps on the data futex and wakes them when
//! a producer in any process commits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::JournalQueue;
use crate::journal::{Word, poll_until};
use crate::{Message, QueueError, Result};

fn poll_next<T: Message>(queue: &mut JournalQueue<T>, cx: &mut Context<'_>) -> Poll<Result<T>> {
    let journal = queue.journal().clone();
    let ready = queue.data_ready();
    poll_until(&journal, Word::Data, None, cx, || queue.dequeue(), || ready).map(|r| {
        r.and_then(|v| v.ok_or_else(|| QueueError::Other("a wait without deadline ended".into())))
    })
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
