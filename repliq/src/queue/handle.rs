//! [`ReplicatedQueueImpl`]: the asynchronous, shareable handle of the seed's interface.
//!
//! One handle (and its clones) holds one producer and one consumer [`JournalQueue`], each behind
//! a mutex that is held only for the append or the take itself, never across an `.await`. Every
//! wait (for a message, for room, for the replicas' acknowledgement) is a future woken through
//! the journal's waiter thread, so no tokio worker thread ever blocks, on a multi-thread or a
//! current-thread runtime.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::Stream;

use super::{JournalQueue, PersistentQueue, Queue, QueueOptions};
use crate::journal::{Journal, ReadyFn, Word, ack_timeout_error, acked_past, cursor, poll_until};
use crate::{Message, QueueError, Result};

#[cfg(feature = "replication")]
/// Something that lives as long as the handle's last clone (e.g. embedded replication).
pub(crate) type Attachment = Box<dyn fmt::Debug + Send + Sync>;

struct Shared<T> {
    journal: Arc<Journal>,
    producer: Mutex<JournalQueue<T>>,
    consumer: Mutex<JournalQueue<T>>,
    #[cfg(feature = "replication")]
    attachment: Mutex<Option<Attachment>>,
}

/// The seed's queue: an asynchronous handle that is `Clone + Send + Sync`, so many tokio tasks
/// enqueue and dequeue through clones of one handle at once.
///
/// Clones share one consumer cursor: they compete for messages, and each message is returned
/// to exactly one of them (as with competing [`JournalQueue`] handles; across crashes, at least
/// once). Handles opened elsewhere with the same consumer name compete too; other names each see
/// every message. It never blocks the executor: waiting for a message ([`recv`](Self::recv)),
/// for room ([`send`](Self::send)) or for the replicas' acknowledgement (a synchronous
/// replication policy) is awaited. For a hot loop on a thread of its own, the synchronous
/// [`JournalQueue`] costs less per message.
///
/// ```
/// use repliq::{PersistentQueue, Queue, ReplicatedQueueImpl};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> repliq::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("my_queue");
/// let queue = ReplicatedQueueImpl::<String>::new(&path, 1024)?;
/// queue.enqueue("Hello".to_string()).await?;
///
/// let consumer = queue.clone();
/// let got = tokio::spawn(async move { consumer.dequeue().await }).await.unwrap()?;
/// assert_eq!(got.as_deref(), Some("Hello"));
/// assert_eq!(queue.dequeue().await?, None);
/// # Ok(())
/// # }
/// ```
pub struct ReplicatedQueueImpl<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ReplicatedQueueImpl<T> {
    fn clone(&self) -> Self {
        ReplicatedQueueImpl {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for ReplicatedQueueImpl<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedQueueImpl")
            .field("path", &self.shared.journal.dir)
            .finish_non_exhaustive()
    }
}

fn lock<Q>(m: &Mutex<Q>) -> MutexGuard<'_, Q> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Message + Send + Sync + 'static> ReplicatedQueueImpl<T> {
    /// Creates the queue at `path` with `options`, or opens it if it exists (then its stored
    /// settings win); the handle consumes as `options`' consumer name.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::create`].
    pub fn create_with(path: impl AsRef<Path>, options: QueueOptions) -> Result<Self> {
        Self::from_queue(options.create(path)?)
    }

    /// Opens the existing queue at `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`QueueOptions::open`].
    pub fn open_with(path: impl AsRef<Path>, options: QueueOptions) -> Result<Self> {
        Self::from_queue(options.open(path)?)
    }

    /// Wraps a synchronous handle (its consumer name and options carry over).
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::try_clone`].
    pub fn from_queue(queue: JournalQueue<T>) -> Result<Self> {
        let producer = queue.try_clone()?;
        Ok(ReplicatedQueueImpl {
            shared: Arc::new(Shared {
                journal: queue.journal().clone(),
                producer: Mutex::new(producer),
                consumer: Mutex::new(queue),
                #[cfg(feature = "replication")]
                attachment: Mutex::new(None),
            }),
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.shared.journal.dir
    }

    /// The capacity stored in the queue.
    pub fn capacity(&self) -> u64 {
        self.shared.journal.config().capacity
    }

    /// A synchronous handle on the same queue with the same consumer name (it competes with
    /// this one), e.g. for a hot loop on a thread of its own.
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::try_clone`].
    pub fn to_sync(&self) -> Result<JournalQueue<T>> {
        lock(&self.shared.consumer).try_clone()
    }

    /// Appends `message` and returns its sequence number; [`QueueError::Full`] at capacity.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`].
    pub async fn enqueue_ref(&self, message: &T) -> Result<u64> {
        self.append(message, false).await
    }

    /// Appends `message`, waiting (without blocking the executor) while the queue is full, and
    /// returns its sequence number.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`], except that a full queue is waited for.
    pub async fn send(&self, message: &T) -> Result<u64> {
        self.append(message, true).await
    }

    async fn append(&self, message: &T, wait_for_room: bool) -> Result<u64> {
        let shared = &self.shared;
        let (seq, ack) = std::future::poll_fn(|cx| {
            poll_until(
                &shared.journal,
                Word::Space,
                None,
                cx,
                || match lock(&shared.producer).append(message) {
                    Ok(r) => Ok(Some(r)),
                    Err(QueueError::Full { .. }) if wait_for_room => Ok(None),
                    Err(e) => Err(e),
                },
                || -> ReadyFn {
                    let journal = shared.journal.clone();
                    let before = cursor::min_position(&journal.meta);
                    Box::new(move || cursor::min_position(&journal.meta) != before)
                },
            )
        })
        .await?
        .ok_or_else(|| QueueError::Other("a wait without deadline ended".into()))?;
        if let Some(timeout) = ack {
            self.wait_acked(seq, timeout).await?;
        }
        Ok(seq)
    }

    async fn wait_acked(&self, seq: u64, timeout: Duration) -> Result<()> {
        let journal = &self.shared.journal;
        let deadline = Instant::now() + timeout;
        let done = std::future::poll_fn(|cx| {
            poll_until(
                journal,
                Word::Ack,
                Some(deadline),
                cx,
                || Ok(acked_past(journal, seq).then_some(())),
                || -> ReadyFn {
                    let journal = journal.clone();
                    Box::new(move || acked_past(&journal, seq))
                },
            )
        })
        .await?;
        done.ok_or_else(|| ack_timeout_error(journal, seq, timeout))
    }

    /// Takes the next message if there is one, without waiting.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`] if there is none; as [`Queue::dequeue`].
    pub fn try_recv(&self) -> Result<T> {
        lock(&self.shared.consumer)
            .dequeue()?
            .ok_or(QueueError::Empty)
    }

    /// Waits for the next message, woken by producers in any process.
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv(&self) -> Result<T> {
        let shared = &self.shared;
        std::future::poll_fn(|cx| {
            let ready = lock(&shared.consumer).data_ready();
            poll_until(
                &shared.journal,
                Word::Data,
                None,
                cx,
                || lock(&shared.consumer).dequeue(),
                || ready,
            )
        })
        .await?
        .ok_or_else(|| QueueError::Other("a wait without deadline ended".into()))
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came.
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        let shared = &self.shared;
        let deadline = Instant::now() + timeout;
        std::future::poll_fn(|cx| {
            let ready = lock(&shared.consumer).data_ready();
            poll_until(
                &shared.journal,
                Word::Data,
                Some(deadline),
                cx,
                || lock(&shared.consumer).dequeue(),
                || ready,
            )
        })
        .await
    }

    /// This handle's messages as a never-ending [`Stream`] (it waits for more). The stream owns
    /// a clone of the handle.
    pub fn stream(&self) -> impl Stream<Item = Result<T>> + Send + 'static {
        futures::stream::unfold(self.clone(), |queue| async move {
            let next = queue.recv().await;
            Some((next, queue))
        })
    }

    #[cfg(feature = "replication")]
    /// Keeps `attachment` alive until the last clone of this handle is dropped.
    pub(crate) fn attach(&self, attachment: Option<Attachment>) -> Option<Attachment> {
        std::mem::replace(&mut *lock(&self.shared.attachment), attachment)
    }

    #[cfg(feature = "replication")]
    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.shared.journal
    }
}

impl<T: Message + Send + Sync + 'static> Queue<T> for ReplicatedQueueImpl<T> {
    async fn enqueue(&self, item: T) -> Result<()> {
        self.append(&item, false).await.map(|_| ())
    }

    async fn dequeue(&self) -> Result<Option<T>> {
        lock(&self.shared.consumer).dequeue()
    }
}

impl<T: Message + Send + Sync + 'static> PersistentQueue<T> for ReplicatedQueueImpl<T> {
    fn new(path: impl AsRef<Path>, capacity: usize) -> Result<Self> {
        let capacity = u64::try_from(capacity)
            .map_err(|_| QueueError::InvalidConfig(format!("capacity {capacity} is too large")))?;
        Self::create_with(path, QueueOptions::new().capacity(capacity))
    }

    fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, QueueOptions::new())
    }
}
