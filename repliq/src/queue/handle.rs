//! [`ReplicatedQueueImpl`]: the asynchronous, shareable handle (the `Queue` /
//! `PersistentQueue` interface).
//!
//! One handle (and its clones) holds a producer and a consumer, each behind a mutex held only
//! for one non-blocking append or take, never across an `.await`. Every wait (for a message,
//! for room, for the replicas' acknowledgement) is a future woken through the journal's waiter
//! thread. Every step that may block a thread (creating the next segment file at a roll,
//! waiting up to the lease for another writer's reservation, `msync` for a [`Durability`] other
//! than `PageCache`) runs on the handle's own I/O thread (started at the first such step,
//! ended with the handle's last clone), while the task awaits it. So no executor thread ever
//! blocks, on a multi-thread or a current-thread runtime. (What remains on the executor: mapping
//! a segment file another writer created, an `open` and an `mmap`, no wait.)
//!
//! [`Durability`]: crate::Durability

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use futures::Stream;

use super::delivery::{Consumer, Delivery, Taken};
use super::{JournalQueue, PersistentQueue, Queue, QueueOptions};
use crate::journal::{Journal, ReadyFn, Word, ack_timeout_error, acked_past, cursor, poll_until};
use crate::{Message, QueueError, Result};

#[cfg(feature = "replication")]
/// Something that lives as long as the handle's last clone (e.g. embedded replication).
pub(crate) type Attachment = Box<dyn fmt::Debug + Send + Sync>;

struct Shared<T> {
    journal: Arc<Journal>,
    /// Appends that cannot block (the common case), on the executor.
    producer: Mutex<JournalQueue<T>>,
    /// Appends that may block (rolls, waits, syncs), on the I/O thread only.
    blocking: Mutex<JournalQueue<T>>,
    consumer: Mutex<Consumer<T>>,
    io: IoThread,
    #[cfg(feature = "replication")]
    attachment: Mutex<Option<Attachment>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The handle's thread for blocking steps: started at the first one, it ends when the handle's
/// last clone is dropped (its job channel closes).
#[derive(Default)]
struct IoThread {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl IoThread {
    /// Runs `f` on the I/O thread; the future resolves with its result.
    async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let mut jobs = lock(&self.jobs);
            let job = match jobs.as_ref() {
                Some(sender) => match sender.send(job) {
                    Ok(()) => None,
                    Err(mpsc::SendError(job)) => Some(job),
                },
                None => Some(job),
            };
            if let Some(job) = job {
                let (stx, srx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("repliq-async-io".into())
                    .spawn(move || {
                        for job in srx {
                            job();
                        }
                    })
                    .map_err(|e| QueueError::io("starting the async handle's I/O thread", e))?;
                let _ = stx.send(job);
                *jobs = Some(stx);
            }
        }
        rx.await
            .map_err(|_| QueueError::Other("the async handle's I/O thread ended".into()))
    }
}

/// An asynchronous handle on a queue that is `Clone + Send + Sync`, so many tasks enqueue and
/// receive through clones of one handle at once. It works on any executor (tokio's
/// current-thread and multi-thread runtimes included) and never blocks an executor thread.
///
/// # Which call gives which guarantee
///
/// | call | cursor moves | a consumer killed after the call returned |
/// |---|---|---|
/// | [`recv_delivery`](Self::recv_delivery) + [`Delivery::ack`] | at `ack` | gets it again (**at-least-once**) |
/// | [`recv`](Self::recv), [`dequeue`](Queue::dequeue), [`try_recv`](Self::try_recv), [`recv_timeout`](Self::recv_timeout), [`stream`](Self::stream) | before the call returns | has lost it (**at-most-once** for what the application does with it) |
///
/// `recv` and the others copy the message out and then move the cursor with a compare-and-swap:
/// among live handles sharing a name each message is returned exactly once, and a consumer
/// killed *inside* the call leaves it to the next; but once the call returned, the message is
/// consumed whatever the application does next. [`recv_delivery`](Self::recv_delivery) hands
/// out a [`Delivery`] (the message, its sequence number and time) and moves the cursor only
/// when the application acknowledges it: use it when handling a message must survive a crash.
/// Deliveries of one handle are committed in sequence order (see [`Delivery`]); a `recv` while
/// deliveries are outstanding consumes its message as soon as those are acknowledged.
///
/// Clones share one consumer: they compete for messages, and each message goes to exactly one of
/// them. Handles opened elsewhere with the same consumer name compete too; other names each see
/// every message. The handle registers its consumer cursor (the "default" name unless
/// [`QueueOptions::consumer`] says otherwise) at its first receive, not when it opens, so a
/// handle that only enqueues holds back no capacity.
///
/// Waiting for a message ([`recv`](Self::recv)), for room ([`send`](Self::send)) or for the
/// replicas' acknowledgement (a synchronous replication policy) is awaited; segment rolls and
/// syncs run on the handle's I/O thread. For a hot loop on a thread of its own, the synchronous
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
/// queue.enqueue("world".to_string()).await?;
///
/// // At-least-once: the cursor moves at `ack`.
/// let delivery = queue.recv_delivery().await?;
/// assert_eq!((delivery.seq(), delivery.message().as_str()), (0, "Hello"));
/// assert!(delivery.ack());
///
/// // At-most-once: the cursor moved when `dequeue` returned.
/// let consumer = queue.clone();
/// let got = tokio::spawn(async move { consumer.dequeue().await }).await.unwrap()?;
/// assert_eq!(got.as_deref(), Some("world"));
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

fn ended() -> QueueError {
    QueueError::Other("a wait without deadline ended".into())
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
    /// As [`QueueOptions::open`]: a [`QueueError::Io`] of kind `NotFound` saying "no queue at
    /// DIR yet" if there is none ([`open_wait`](Self::open_wait) waits for it).
    pub fn open_with(path: impl AsRef<Path>, options: QueueOptions) -> Result<Self> {
        Self::from_queue(options.open(path)?)
    }

    /// Opens the queue at `path` with `options`, waiting up to `timeout` for another process to
    /// create it (a consumer started before its producer). Polls for the queue every 10 ms on
    /// a thread of its own, so it does not block the executor.
    ///
    /// # Errors
    ///
    /// The "no queue at DIR yet" [`QueueError::Io`] (kind `NotFound`) if none appeared within
    /// `timeout`; otherwise as [`QueueOptions::open`].
    pub async fn open_wait(
        path: impl AsRef<Path>,
        options: QueueOptions,
        timeout: Duration,
    ) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::Builder::new()
            .name("repliq-open-wait".into())
            .spawn(move || {
                let _ = tx.send(options.open_wait::<T>(&path, timeout));
            })
            .map_err(|e| QueueError::io("starting a thread to wait for the queue", e))?;
        let queue = rx
            .await
            .map_err(|_| QueueError::Other("the open_wait thread ended".into()))??;
        Self::from_queue(queue)
    }

    /// Wraps a synchronous handle (its consumer name and options carry over).
    ///
    /// # Errors
    ///
    /// As [`JournalQueue::try_clone`].
    pub fn from_queue(queue: JournalQueue<T>) -> Result<Self> {
        let mut producer = queue.appending_clone()?;
        // Finding the tail reads the newest segment: do it here, not in the first `enqueue`.
        producer.prepare_appender();
        let blocking = queue.appending_clone()?;
        Ok(ReplicatedQueueImpl {
            shared: Arc::new(Shared {
                journal: queue.journal().clone(),
                producer: Mutex::new(producer),
                blocking: Mutex::new(blocking),
                consumer: Mutex::new(Consumer::new(queue)),
                io: IoThread::default(),
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
        lock(&self.shared.consumer).queue.try_clone()
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
        let (seq, ack) = loop {
            // `Some(None)`: appending needs a blocking step.
            let attempt = std::future::poll_fn(|cx| {
                poll_until(
                    &shared.journal,
                    Word::Space,
                    None,
                    cx,
                    || match lock(&shared.producer).try_append(message) {
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
            .ok_or_else(ended)?;
            if let Some(done) = attempt {
                break done;
            }
            // A roll (or a wait for another writer, or a sync): on the I/O thread, with the
            // message serialized here (the task keeps its borrow).
            let bytes = crate::to_bytes(message)?;
            let epoch = lock(&shared.producer).fence_epoch();
            let for_io = Arc::clone(shared);
            let (result, epoch) = shared
                .io
                .run(move || {
                    let mut blocking = lock(&for_io.blocking);
                    blocking.share_fence_epoch(epoch);
                    (blocking.append_serialized(&bytes), blocking.fence_epoch())
                })
                .await?;
            // One application handle is fenced as one: both producers keep the first epoch.
            lock(&shared.producer).share_fence_epoch(epoch);
            match result {
                Err(QueueError::Full { .. }) if wait_for_room => continue,
                other => break other?,
            }
        };
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

    /// Takes a message (`ack_now`: consumed at once), waiting up to `deadline` (`None`: for
    /// ever); `Ok(None)` at the deadline.
    async fn take(&self, ack_now: bool, deadline: Option<Instant>) -> Result<Option<Taken<T>>> {
        let shared = &self.shared;
        std::future::poll_fn(|cx| {
            let ready = lock(&shared.consumer).data_ready(ack_now);
            poll_until(
                &shared.journal,
                Word::Data,
                deadline,
                cx,
                || lock(&shared.consumer).take(ack_now),
                || ready,
            )
        })
        .await
    }

    /// Takes the next message if there is one, without waiting. At-most-once (see the table
    /// above): the cursor has moved when it returns.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`] if there is none; as [`Queue::dequeue`].
    pub fn try_recv(&self) -> Result<T> {
        lock(&self.shared.consumer)
            .take(true)?
            .map(|t| t.value)
            .ok_or(QueueError::Empty)
    }

    /// Waits for the next message, woken by producers in any process. At-most-once (see the
    /// table above): the cursor has moved when it returns; for at-least-once use
    /// [`recv_delivery`](Self::recv_delivery).
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv(&self) -> Result<T> {
        Ok(self.take(true, None).await?.ok_or_else(ended)?.value)
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came. At-most-once, as
    /// [`recv`](Self::recv).
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        let deadline = Instant::now() + timeout;
        Ok(self.take(true, Some(deadline)).await?.map(|t| t.value))
    }

    /// Waits for the next message and hands it out as a [`Delivery`] (with its sequence number
    /// and time) **without consuming it**: the cursor moves when the application calls
    /// [`Delivery::ack`]. A delivery dropped unacknowledged is handed out again by this handle;
    /// if the process dies first, the message goes to the next consumer of the name. So every
    /// message is handled at least once, whatever crashes (and, if the application acknowledges
    /// only after its side effects, a message can be handled twice: deduplicate by
    /// [`Delivery::seq`] where that matters).
    ///
    /// Clones of this handle share the deliveries: one delivery goes to one task.
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv_delivery(&self) -> Result<Delivery<T>> {
        let taken = self.take(false, None).await?.ok_or_else(ended)?;
        Ok(Delivery::new(self.clone(), taken))
    }

    /// [`recv_delivery`](Self::recv_delivery) waiting up to `timeout`; `Ok(None)` if no message
    /// came.
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub async fn recv_delivery_timeout(&self, timeout: Duration) -> Result<Option<Delivery<T>>> {
        let deadline = Instant::now() + timeout;
        let taken = self.take(false, Some(deadline)).await?;
        Ok(taken.map(|t| Delivery::new(self.clone(), t)))
    }

    /// [`recv_delivery`](Self::recv_delivery) without waiting: `Ok(None)` if there is no
    /// message.
    ///
    /// # Errors
    ///
    /// As [`Queue::dequeue`].
    pub fn try_recv_delivery(&self) -> Result<Option<Delivery<T>>> {
        let taken = lock(&self.shared.consumer).take(false)?;
        Ok(taken.map(|t| Delivery::new(self.clone(), t)))
    }

    pub(crate) fn ack_delivery(&self, seq: u64) -> bool {
        lock(&self.shared.consumer).ack(seq)
    }

    pub(crate) fn release_delivery(&self, seq: u64) {
        lock(&self.shared.consumer).release(seq);
        // A task waiting for a message may take this one now.
        let meta = &self.shared.journal.meta;
        crate::journal::notify::wake(meta.data_notify(), meta.data_waiters());
    }

    /// This handle's messages as a never-ending [`Stream`] (it waits for more), consumed as
    /// [`recv`](Self::recv) consumes them (at-most-once). The stream owns a clone of the handle.
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

    /// At-most-once: the cursor has moved when it returns (see the type's table).
    async fn dequeue(&self) -> Result<Option<T>> {
        Ok(lock(&self.shared.consumer).take(true)?.map(|t| t.value))
    }
}

impl<T: Message + Send + Sync + 'static> PersistentQueue<T> for ReplicatedQueueImpl<T> {
    /// Creates the queue at `path` with room for `capacity` unconsumed messages, or opens it.
    /// The handle registers its consumer cursor ("default") at its first receive, so a handle
    /// that only enqueues never fills the queue for itself.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] if the queue exists with another capacity (open it with
    /// [`open`](PersistentQueue::open) to keep its stored settings); as
    /// [`QueueOptions::create`].
    fn new(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        Self::create_with(
            path,
            QueueOptions::new()
                .capacity(capacity)
                .producer()
                .require_capacity(),
        )
    }

    /// Opens the existing queue at `path`; the consumer cursor ("default") is registered at the
    /// first receive.
    fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, QueueOptions::new().producer())
    }
}
