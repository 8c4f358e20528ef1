//! Unit tests of the typed queue API (single process; the multi-process tests live in
//! `repliq/tests/`).

use std::time::Duration;

use crate::{
    JournalQueue, PersistentQueue, Queue, QueueError, QueueOptions, ReplicatedQueueImpl, StartAt,
};

#[crate::message(name = "test.Job")]
#[derive(Debug, Clone, PartialEq)]
struct Job {
    id: u64,
    name: String,
}

#[crate::message(name = "test.Other")]
#[derive(Debug, Clone, PartialEq)]
struct Other {
    x: u32,
}

fn job(id: u64) -> Job {
    Job {
        id,
        name: format!("job-{id}"),
    }
}

fn small() -> QueueOptions {
    QueueOptions::new().segment_size(8192).index_interval(4)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn enqueue_then_dequeue_through_the_traits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    current_thread().block_on(async {
        let q = <ReplicatedQueueImpl<Job> as PersistentQueue<Job>>::new(&path, 16).unwrap();
        q.enqueue(job(1)).await.unwrap();
        q.enqueue(job(2)).await.unwrap();
        let c = <ReplicatedQueueImpl<Job> as PersistentQueue<Job>>::open(&path).unwrap();
        assert_eq!(c.dequeue().await.unwrap(), Some(job(1)));
        assert_eq!(
            q.dequeue().await.unwrap(),
            Some(job(2)),
            "same default cursor"
        );
        assert_eq!(c.dequeue().await.unwrap(), None);
        assert!(matches!(c.try_recv(), Err(QueueError::Empty)));
        // The sync handle sees the same queue.
        let mut sync = JournalQueue::<Job>::open(&path).unwrap();
        assert_eq!(sync.enqueue(&job(3)).unwrap(), 2);
        assert_eq!(q.recv().await.unwrap(), job(3));
    });
}

#[test]
fn clones_shared_by_many_tasks_deliver_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 500;
    let got = rt.block_on(async {
        let q = ReplicatedQueueImpl::<Job>::create_with(&path, small().capacity(10_000)).unwrap();
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let c = q.clone();
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(j) = c.recv_timeout(Duration::from_millis(500)).await.unwrap() {
                    got.push(j.id);
                }
                got
            }));
        }
        // A handle opened separately with the same consumer name competes too.
        let other = ReplicatedQueueImpl::<Job>::open_with(&path, small()).unwrap();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = other
                .recv_timeout(Duration::from_millis(500))
                .await
                .unwrap()
            {
                got.push(j.id);
            }
            got
        }));
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let q = q.clone();
            producers.push(tokio::spawn(async move {
                for i in 0..EACH {
                    q.enqueue(job(p * EACH + i)).await.unwrap();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no message delivered twice");
    assert_eq!(
        sorted,
        (0..PRODUCERS * EACH).collect::<Vec<_>>(),
        "none lost"
    );
}

#[test]
fn recv_on_a_current_thread_runtime_is_woken_by_another_thread() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let q = ReplicatedQueueImpl::<Job>::create_with(&path, small()).unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let producer_path = path.clone();
    let seen_ticks = Arc::clone(&ticks);
    // The producer writes only once the ticker has ticked 5 times *while `recv` waits*: if
    // `recv` blocked the runtime's only thread, no tick would come, and the producer would give
    // up after 10 s and write anyway (then the assertion below fails, instead of hanging).
    let producer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen_ticks.load(Ordering::SeqCst) < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ticked = seen_ticks.load(Ordering::SeqCst);
        let mut p = JournalQueue::<Job>::open(&producer_path).unwrap();
        p.enqueue(&job(7)).unwrap();
        ticked
    });
    current_thread().block_on(async {
        let t = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        let got = tokio::time::timeout(Duration::from_secs(20), q.recv())
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, job(7));
    });
    assert!(
        producer.join().unwrap() >= 5,
        "the executor ticked while recv waited"
    );
}

/// A `send` that crosses segment rolls and waits for room must leave a current-thread runtime
/// running: here every roll is held up (the test holds the queue's segment lock, which a roll
/// takes) until a ticking task on the same runtime has ticked 3 more times, and room is made
/// only by that task consuming. On code that rolls on the executor, the first roll blocks the
/// only thread; a watchdog thread then releases the lock after 10 s and the test fails.
#[test]
fn send_crossing_segment_rolls_leaves_a_current_thread_runtime_running() {
    use std::fs::File;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let q = ReplicatedQueueImpl::<Job>::create_with(
        &path,
        QueueOptions::new()
            .segment_size(4096)
            .index_interval(4)
            .capacity(4)
            .producer(),
    )
    .unwrap();
    let mut consumer = JournalQueue::<Job>::open(&path).unwrap();
    let meta = path.join("queue.meta");
    let take_lock = {
        let meta = meta.clone();
        move || {
            let f = File::open(&meta).unwrap();
            f.lock().unwrap();
            f
        }
    };
    let lock: Arc<Mutex<Option<File>>> = Arc::new(Mutex::new(None));
    let fired = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (lock, fired, done) = (lock.clone(), fired.clone(), done.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done.load(Ordering::SeqCst) {
                if std::time::Instant::now() > deadline {
                    fired.store(true, Ordering::SeqCst);
                    lock.lock().unwrap().take();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let ticks = Arc::new(AtomicU64::new(0));
    // The tick count when the lock was last taken.
    let locked_tick = Arc::new(AtomicU64::new(0));
    let (mut rolls, mut received) = (0u64, Vec::new());
    current_thread().block_on(async {
        // The ticking task: releases the held segment lock 3 ticks after it was taken, and
        // consumes a message every other tick (the only source of room).
        let (t, l, since) = (ticks.clone(), lock.clone(), locked_tick.clone());
        let ticker = tokio::spawn(async move {
            let mut got = Vec::new();
            for n in 0u64.. {
                tokio::time::sleep(Duration::from_millis(2)).await;
                t.store(n + 1, Ordering::SeqCst);
                if n + 1 >= since.load(Ordering::SeqCst) + 3 {
                    l.lock().unwrap().take();
                }
                if n % 2 == 0
                    && let Some(j) = consumer.dequeue().unwrap()
                {
                    got.push(j.id);
                    if j.id == 59 {
                        return got;
                    }
                }
            }
            got
        });
        let mut segments = 1;
        for i in 0..60u64 {
            let before = ticks.load(Ordering::SeqCst);
            if !fired.load(Ordering::SeqCst) {
                let mut held = lock.lock().unwrap();
                held.take();
                *held = Some(take_lock());
                locked_tick.store(before, Ordering::SeqCst);
            }
            let msg = Job {
                id: i,
                name: "x".repeat(900),
            };
            q.send(&msg).await.unwrap();
            let count = std::fs::read_dir(&path)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count();
            if count > segments {
                segments = count;
                rolls += 1;
                assert!(
                    ticks.load(Ordering::SeqCst) >= before + 3,
                    "send {i} rolled a segment without the runtime ticking meanwhile"
                );
            }
        }
        received = ticker.await.unwrap();
    });
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert!(!fired.load(Ordering::SeqCst), "a roll blocked the runtime");
    assert!(rolls >= 10, "only {rolls} rolls");
    assert_eq!(received, (0..60).collect::<Vec<_>>());
}

#[test]
fn send_waits_for_room_and_enqueue_refuses_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    current_thread().block_on(async {
        let q = ReplicatedQueueImpl::<Job>::create_with(&path, small().capacity(2)).unwrap();
        q.enqueue(job(0)).await.unwrap();
        q.enqueue(job(1)).await.unwrap();
        assert!(matches!(
            q.enqueue(job(2)).await,
            Err(QueueError::Full { capacity: 2, .. })
        ));
        let sender = q.clone();
        let send = tokio::spawn(async move { sender.send(&job(2)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!send.is_finished(), "no room yet");
        assert_eq!(q.dequeue().await.unwrap(), Some(job(0)));
        let seq = tokio::time::timeout(Duration::from_secs(10), send)
            .await
            .expect("woken by the consumer")
            .unwrap()
            .unwrap();
        assert_eq!(seq, 2);
    });
}

#[test]
fn the_replication_policy_is_read_on_every_enqueue() {
    use crate::ReplicationError;
    use crate::journal::{Policy, Role};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut sync = small().create::<Job>(&path).unwrap();
    let journal = sync.journal().clone();
    let policy = |role, epoch, acks| Policy {
        role,
        epoch,
        required_acks: acks,
        ack_timeout: Duration::from_millis(50),
    };
    assert_eq!(sync.enqueue(&job(0)).unwrap(), 0);
    // Synchronous: a handle opened before the policy changed waits, and times out.
    policy(Role::Primary, 1, 1).store(&journal.meta);
    match sync.enqueue(&job(1)) {
        Err(QueueError::Replication(ReplicationError::AckTimeout { seq: 1, .. })) => {}
        other => panic!("expected an acknowledgement timeout, got {other:?}"),
    }
    let q = ReplicatedQueueImpl::<Job>::open_with(&path, small()).unwrap();
    current_thread().block_on(async {
        match q.enqueue(job(2)).await {
            Err(QueueError::Replication(ReplicationError::AckTimeout { seq: 2, .. })) => {}
            other => panic!("expected an acknowledgement timeout, got {other:?}"),
        }
        // Acknowledged up to 3: the next one is waited for and then acknowledged.
        journal
            .meta
            .acked()
            .store(4, std::sync::atomic::Ordering::Release);
        q.enqueue(job(3)).await.unwrap();
    });
    // Demoted: the handle that wrote is fenced, a new one is refused as a replica's.
    policy(Role::Replica, 1, 0).store(&journal.meta);
    assert!(matches!(
        sync.enqueue(&job(4)),
        Err(QueueError::Replication(ReplicationError::Fenced {
            handle_epoch: 1,
            ..
        }))
    ));
    let mut fresh = JournalQueue::<Job>::open(&path).unwrap();
    assert!(matches!(
        fresh.enqueue(&job(4)),
        Err(QueueError::Replication(
            ReplicationError::ReadOnlyReplica { .. }
        ))
    ));
    // Promoted again in a newer epoch: old handles stay fenced, new ones write.
    policy(Role::Primary, 2, 0).store(&journal.meta);
    assert!(matches!(
        sync.enqueue(&job(4)),
        Err(QueueError::Replication(ReplicationError::Fenced {
            epoch: 2,
            ..
        }))
    ));
    assert_eq!(fresh.enqueue(&job(4)).unwrap(), 4);
    let mut seen = Vec::new();
    let mut c = JournalQueue::<Job>::open(&path).unwrap();
    while let Some(j) = c.dequeue().unwrap() {
        seen.push(j.id);
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4], "nothing written while fenced");
}

/// The lease word (`journal/lease.rs`): a primary whose election revoked its lease, or whose
/// lease ran out, or whose deadline belongs to another boot, writes nothing; a deadline in the
/// future and a lifted lease allow writes, on every write path.
#[cfg(feature = "replication")]
#[test]
fn the_lease_word_is_checked_on_every_write() {
    use crate::ReplicationError;
    use crate::replication::QueueLease;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut q = small().create::<Job>(&path).unwrap();
    let mut raw = crate::RawQueue::open(&path, "raw", crate::StartAt::Earliest).unwrap();
    let lease = QueueLease::open(&path).unwrap();
    assert!(!lease.in_force());
    assert_eq!(q.enqueue(&job(0)).unwrap(), 0);

    let refused = |r: crate::Result<u64>, ran_out: bool| match r {
        Err(QueueError::Replication(ReplicationError::LeaseExpired { ran_out_ago, .. })) => {
            assert_eq!(ran_out_ago.is_some(), ran_out, "{ran_out_ago:?}");
        }
        other => panic!("expected LeaseExpired, got {other:?}"),
    };
    lease.grant_until(None);
    refused(q.enqueue(&job(1)), false);
    refused(raw.append(&crate::to_bytes(&job(1)).unwrap()), false);
    let async_q = ReplicatedQueueImpl::<Job>::open_with(&path, small()).unwrap();
    current_thread().block_on(async {
        refused(async_q.enqueue(job(1)).await.map(|()| 0), false);
    });

    lease.grant_until(Some(Instant::now() + Duration::from_secs(60)));
    assert_eq!(q.enqueue(&job(1)).unwrap(), 1);
    assert_eq!(raw.append(&crate::to_bytes(&job(2)).unwrap()).unwrap(), 2);

    // Run out: the deadline is in the past (a primary resumed after a pause past its lease).
    lease.grant_until(Some(Instant::now() - Duration::from_millis(500)));
    refused(q.enqueue(&job(3)), true);
    let err = q.enqueue(&job(3)).unwrap_err().to_string();
    assert!(
        err.contains("lease on the queue ran out") && err.contains("nothing was written"),
        "{err}"
    );

    // A deadline written in another boot of the machine counts as run out.
    lease.grant_until(Some(Instant::now() + Duration::from_secs(60)));
    q.journal()
        .meta
        .lease_boot()
        .fetch_xor(1, std::sync::atomic::Ordering::AcqRel);
    refused(q.enqueue(&job(3)), false);

    // Lifted (manual promotion, a daemon without an election): writes again.
    lease.clear();
    assert!(!lease.in_force());
    assert_eq!(q.enqueue(&job(3)).unwrap(), 3);
    let mut seen = Vec::new();
    let mut c = JournalQueue::<Job>::open(&path).unwrap();
    while let Some(j) = c.dequeue().unwrap() {
        seen.push(j.id);
    }
    assert_eq!(
        seen,
        vec![0, 1, 2, 3],
        "nothing written while the lease refused"
    );
}

#[test]
fn a_full_queue_refuses_with_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().capacity(3).create::<Job>(dir.path()).unwrap();
    for i in 0..3 {
        q.enqueue(&job(i)).unwrap();
    }
    let err = q.enqueue(&job(3)).unwrap_err();
    assert!(
        matches!(err, QueueError::Full { capacity: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"queue is full: the backlog of consumer "default" reached the capacity of 3 messages"#
    );
    assert_eq!(q.backlog().unwrap(), 3);
    assert_eq!(q.dequeue().unwrap(), Some(job(0)));
    assert_eq!(q.enqueue(&job(3)).unwrap(), 3, "room again after a dequeue");
    // A second, slower consumer holds capacity back too.
    let slow = q.consumer("slow").unwrap();
    assert_eq!(q.dequeue().unwrap(), Some(job(1)));
    match q.enqueue(&job(4)) {
        Err(QueueError::Full { slowest, .. }) => assert_eq!(slowest, "slow", "names who holds it"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(slow.remove_consumer("slow"));
    assert_eq!(q.enqueue(&job(4)).unwrap(), 4);
    // enqueue_wait times out with Full, and succeeds when a consumer makes room.
    let err = q
        .enqueue_wait(&job(5), Some(Duration::from_millis(20)))
        .unwrap_err();
    assert!(matches!(err, QueueError::Full { capacity: 3, .. }));
    let mut other = q.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        other.dequeue().unwrap()
    });
    assert_eq!(q.enqueue_wait(&job(5), None).unwrap(), 5);
    assert_eq!(t.join().unwrap(), Some(job(2)));
}

#[test]
fn opening_with_another_type_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    drop(JournalQueue::<Job>::new(dir.path(), 8).unwrap());
    let err = JournalQueue::<Other>::open(dir.path()).unwrap_err();
    match &err {
        QueueError::TypeMismatch {
            expected_name,
            found_name,
            expected_fingerprint,
            found_fingerprint,
            ..
        } => {
            assert_eq!(expected_name, "test.Other");
            assert_eq!(found_name, "test.Job");
            assert_eq!(
                *expected_fingerprint,
                <Other as crate::Fingerprint>::FINGERPRINT
            );
            assert_eq!(*found_fingerprint, <Job as crate::Fingerprint>::FINGERPRINT);
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("holds messages of type `test.Job`"), "{msg}");
    assert!(msg.contains("not `test.Other`"), "{msg}");
    assert!(matches!(
        JournalQueue::<Other>::new(dir.path(), 8),
        Err(QueueError::TypeMismatch { .. })
    ));
}

#[test]
fn opening_a_missing_queue_says_there_is_no_queue_yet() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = JournalQueue::<Job>::open(&missing).unwrap_err();
    assert!(
        matches!(&err, QueueError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("no queue at {} yet", missing.display())),
        "{text}"
    );
    let err = ReplicatedQueueImpl::<Job>::open(&missing).unwrap_err();
    assert!(err.to_string().contains("no queue at"), "{err}");
}

#[test]
fn open_wait_waits_for_the_queue_to_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later");
    // Nothing comes: the same "no queue yet" error, after the timeout.
    let started = std::time::Instant::now();
    let err = QueueOptions::new()
        .open_wait::<Job>(&path, Duration::from_millis(50))
        .unwrap_err();
    // A lower bound (it waited the whole timeout before giving up): a slow machine only makes
    // the elapsed time longer, so this cannot flake that way.
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(err.to_string().contains("no queue at"), "{err}");

    // A consumer waits (sync and async) while a producer thread creates the queue and writes.
    let creator_path = path.clone();
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut q = QueueOptions::new()
            .producer()
            .create::<Job>(&creator_path)
            .unwrap();
        q.enqueue(&job(1)).unwrap();
    });
    let sync_path = path.clone();
    let sync_waiter = std::thread::spawn(move || {
        let mut q = QueueOptions::new()
            .consumer("sync")
            .open_wait::<Job>(&sync_path, Duration::from_secs(10))
            .unwrap();
        q.dequeue_wait(Some(Duration::from_secs(10))).unwrap()
    });
    current_thread().block_on(async {
        let ticks = tokio::spawn(async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let q = ReplicatedQueueImpl::<Job>::open_wait(
            &path,
            QueueOptions::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(
            ticks.is_finished(),
            "the runtime ran while open_wait waited"
        );
        let got = tokio::time::timeout(Duration::from_secs(10), q.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, job(1));
    });
    creator.join().unwrap();
    assert_eq!(sync_waiter.join().unwrap(), Some(job(1)));
}

#[test]
fn new_holds_no_capacity_until_the_first_read_and_refuses_another_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    current_thread().block_on(async {
        let producer = ReplicatedQueueImpl::<Job>::new(&path, 100).unwrap();
        for i in 0..250 {
            producer.enqueue(job(i)).await.unwrap();
        }
        assert!(
            crate::inspect(&path).unwrap().cursors.is_empty(),
            "no cursor yet"
        );
        // Another capacity for the existing queue is an error naming both.
        let err = ReplicatedQueueImpl::<Job>::new(&path, 10).unwrap_err();
        assert!(matches!(err, QueueError::InvalidConfig(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("capacity of 100") && text.contains("10 asked"),
            "{text}"
        );
        assert!(matches!(
            JournalQueue::<Job>::new(&path, 10),
            Err(QueueError::InvalidConfig(_))
        ));
        // The same capacity, and `open`, are fine.
        let consumer = ReplicatedQueueImpl::<Job>::new(&path, 100).unwrap();
        let _ = ReplicatedQueueImpl::<Job>::open(&path).unwrap();
        // The first read registers "default" at the earliest message; from then on it bounds
        // the backlog.
        assert_eq!(consumer.recv().await.unwrap(), job(0));
        let err = producer.enqueue(job(250)).await.unwrap_err();
        assert!(
            matches!(err, QueueError::Full { capacity: 100, .. }),
            "{err:?}"
        );
    });
}

#[test]
fn deliveries_move_the_cursor_only_when_acknowledged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    current_thread().block_on(async {
        let q = ReplicatedQueueImpl::<Job>::create_with(&path, small()).unwrap();
        for i in 0..6 {
            q.enqueue(job(i)).await.unwrap();
        }
        let cursor = || crate::inspect(&path).unwrap().cursors[0].next_seq;
        let d0 = q.recv_delivery().await.unwrap();
        let d1 = q.recv_delivery().await.unwrap();
        let d2 = q.clone().recv_delivery().await.unwrap();
        assert_eq!((d0.seq(), d1.seq(), d2.seq()), (0, 1, 2));
        assert_eq!(d1.message(), &job(1));
        assert!(d0.time_unix_nanos() > 0);
        assert!(d0.time() <= std::time::SystemTime::now());
        assert_eq!(cursor(), 0, "nothing acknowledged yet");
        // Acknowledged out of order: the cursor waits for the earliest.
        assert!(d1.ack());
        assert_eq!(cursor(), 0);
        // Dropped unacknowledged: handed out again before anything new.
        drop(d2);
        let again = q.recv_delivery().await.unwrap();
        assert_eq!(again.seq(), 2);
        assert!(d0.ack());
        assert_eq!(cursor(), 2, "0 and 1 are acknowledged");
        let (msg, ack) = again.into_parts();
        assert_eq!(msg, job(2));
        assert!(ack.ack());
        assert_eq!(cursor(), 3);
        // `dequeue` consumes at once when nothing is outstanding...
        assert_eq!(q.dequeue().await.unwrap(), Some(job(3)));
        assert_eq!(cursor(), 4);
        // ...and once earlier deliveries are acknowledged otherwise.
        let d4 = q.try_recv_delivery().unwrap().unwrap();
        assert_eq!(q.try_recv().unwrap(), job(5));
        assert_eq!(cursor(), 4);
        d4.nack();
        let d4 = q
            .recv_delivery_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d4.seq(), 4);
        assert!(d4.ack());
        assert_eq!(cursor(), 6);
        assert!(
            q.recv_delivery_timeout(Duration::from_millis(20))
                .await
                .unwrap()
                .is_none()
        );

        // A competing handle in another "process" (its own journal mapping) consumed a message
        // this handle holds as a delivery: the late acknowledgement says so.
        q.enqueue(job(6)).await.unwrap();
        let d6 = q.recv_delivery().await.unwrap();
        let mut other = JournalQueue::<Job>::open(&path).unwrap();
        assert_eq!(other.dequeue().unwrap(), Some(job(6)));
        assert!(!d6.ack(), "consumed by the other handle first");
        assert_eq!(cursor(), 7);
    });
    // A new handle (a restarted process) starts at the first unacknowledged message.
    current_thread().block_on(async {
        let q = ReplicatedQueueImpl::<Job>::open(&path).unwrap();
        q.enqueue(job(7)).await.unwrap();
        let d = q.recv_delivery().await.unwrap();
        assert_eq!(d.seq(), 7);
        drop(d); // not acknowledged: lost with the "process"
        drop(q);
        let q = ReplicatedQueueImpl::<Job>::open(&path).unwrap();
        assert_eq!(q.recv_delivery().await.unwrap().seq(), 7, "delivered again");
    });
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            QueueOptions::new().capacity(0),
            "capacity must be at least 1",
        ),
        (QueueOptions::new().segment_size(5000), "segment size 5000"),
        (QueueOptions::new().index_interval(0), "index interval"),
        (QueueOptions::new().consumer(""), "consumer name"),
        (
            QueueOptions::new().consumer("x".repeat(41)),
            "must be 1 to 40 bytes",
        ),
    ];
    for (i, (options, needle)) in cases.into_iter().enumerate() {
        let err = options
            .create::<Job>(dir.path().join(i.to_string()))
            .unwrap_err();
        assert!(matches!(err, QueueError::InvalidConfig(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    }
}

#[test]
fn a_message_larger_than_the_maximum_is_a_serialization_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small()
        .max_message_size(64)
        .create::<Job>(dir.path())
        .unwrap();
    let big = Job {
        id: 1,
        name: "x".repeat(500),
    };
    let err = q.enqueue(&big).unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::Serialization {
                type_name: "test.Job",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("cannot serialize a `test.Job`"),
        "{err}"
    );
    assert_eq!(q.enqueue(&job(1)).unwrap(), 0);
}

#[test]
fn same_name_competes_different_names_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = small().create::<Job>(dir.path()).unwrap();
    let mut a1 = p.consumer("a").unwrap();
    let mut a2 = a1.try_clone().unwrap();
    let mut b = p.consumer("b").unwrap();
    for i in 0..200 {
        p.enqueue(&job(i)).unwrap();
    }
    let mut got_a = Vec::new();
    loop {
        let x = a1.dequeue().unwrap();
        let y = a2.dequeue().unwrap();
        if x.is_none() && y.is_none() {
            break;
        }
        got_a.extend(x.into_iter().chain(y).map(|j| j.id));
    }
    assert_eq!(got_a, (0..200).collect::<Vec<_>>());
    let mut got_b = Vec::new();
    while let Some(j) = b.dequeue().unwrap() {
        got_b.push(j.id);
    }
    assert_eq!(got_b, (0..200).collect::<Vec<_>>());
}

#[test]
fn competing_threads_consume_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = small().create::<Job>(dir.path()).unwrap();
    for i in 0..2000 {
        p.enqueue(&job(i)).unwrap();
    }
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let mut c = p.consumer("workers").unwrap();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(j) = c.dequeue().unwrap() {
                    got.push(j.id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<_>>());
}

#[test]
fn peek_read_and_tailers_are_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    for i in 0..10 {
        q.enqueue(&job(i)).unwrap();
    }
    {
        let g = q.peek().unwrap().unwrap();
        assert_eq!(g.id, 0);
        assert_eq!(g.name, "job-0");
        // Dropped without commit: still there.
    }
    let g = q.peek().unwrap().unwrap();
    assert_eq!((g.seq(), g.id.to_native()), (0, 0));
    assert!(g.commit());
    assert_eq!(q.read(|a| a.id.to_native()).unwrap(), Some(1));
    let len = q.read_bytes(|bytes| bytes.len()).unwrap().unwrap();
    assert!(len > 0);
    assert_eq!(q.dequeue().unwrap(), Some(job(3)));

    let mut t = q.tailer(StartAt::Earliest).unwrap();
    assert_eq!(t.try_next().unwrap(), Some(job(0)));
    let mut t = q.tailer(StartAt::Seq(7)).unwrap();
    assert_eq!(
        t.read(|seq, a| (seq, a.id.to_native())).unwrap(),
        Some((7, 7))
    );
    let mut t = q.tailer(StartAt::Latest).unwrap();
    assert_eq!(t.try_next().unwrap(), None);
    q.enqueue(&job(10)).unwrap();
    assert_eq!(t.try_next().unwrap(), Some(job(10)));
    assert_eq!(q.backlog().unwrap(), 7, "tailers do not consume");
}

#[test]
fn a_new_consumer_at_latest_skips_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    q.enqueue(&job(0)).unwrap();
    let mut late = small()
        .consumer("late")
        .start_at(StartAt::Latest)
        .open::<Job>(dir.path())
        .unwrap();
    assert_eq!(late.dequeue().unwrap(), None);
    q.enqueue(&job(1)).unwrap();
    assert_eq!(late.dequeue().unwrap(), Some(job(1)));
}

#[test]
fn messages_survive_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = small().create::<Job>(dir.path()).unwrap();
        for i in 0..500 {
            q.enqueue(&job(i)).unwrap();
        }
        q.flush().unwrap();
    }
    let mut q = JournalQueue::<Job>::open(dir.path()).unwrap();
    for i in 0..250 {
        assert_eq!(q.dequeue().unwrap(), Some(job(i)));
    }
    drop(q);
    let mut q = JournalQueue::<Job>::open(dir.path()).unwrap();
    assert_eq!(
        q.dequeue().unwrap(),
        Some(job(250)),
        "the cursor is persistent"
    );
    assert!(q.purge_consumed().unwrap() > 0);
    for i in 251..500 {
        assert_eq!(q.dequeue().unwrap(), Some(job(i)));
    }
    assert_eq!(q.enqueue(&job(500)).unwrap(), 500);
}

#[test]
fn durability_modes_write_and_flush() {
    use crate::Durability;
    for d in [
        Durability::Sync,
        Durability::GroupCommit {
            interval: Duration::from_millis(1),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut q = small().durability(d).create::<Job>(dir.path()).unwrap();
        for i in 0..300 {
            q.enqueue(&job(i)).unwrap();
        }
        q.flush().unwrap();
        let mut c = JournalQueue::<Job>::open(dir.path()).unwrap();
        assert_eq!(c.dequeue().unwrap(), Some(job(0)));
    }
}

#[test]
fn a_waiting_consumer_is_woken_by_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    let mut p = q.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        p.enqueue(&job(9)).unwrap();
    });
    assert_eq!(q.dequeue_wait(None).unwrap(), Some(job(9)));
    t.join().unwrap();
    assert_eq!(
        q.dequeue_wait(Some(Duration::from_millis(10))).unwrap(),
        None
    );
}

#[test]
fn recv_and_stream_wait_without_blocking_the_executor() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    let mut p = q.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            p.enqueue(&job(i)).unwrap();
        }
    });
    let first = futures::executor::block_on(q.recv()).unwrap();
    assert_eq!(first, job(0));
    let rest: Vec<Job> =
        futures::executor::block_on(q.stream().take(2).map(|r| r.unwrap()).collect::<Vec<_>>());
    assert_eq!(rest, vec![job(1), job(2)]);
    t.join().unwrap();
}

#[test]
fn consumed_segments_are_deleted_automatically_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small()
        .delete_consumed_segments(true)
        .create::<Job>(dir.path())
        .unwrap();
    for round in 0..6u64 {
        for i in 0..100 {
            q.enqueue(&job(round * 100 + i)).unwrap();
        }
        while q.dequeue().unwrap().is_some() {}
    }
    // The purge runs in the background once per segment written, with the cursors of that
    // moment; by the later rounds the first segment has long been passed. Wait for it (bounded,
    // not a timing assertion).
    let first = dir.path().join("00000000000000000000.seg");
    for _ in 0..1000 {
        if !first.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!first.exists(), "segment 0 was not deleted");
    let mut t = q.tailer(StartAt::Earliest).unwrap();
    assert!(
        t.try_next().unwrap().unwrap().id > 0,
        "history before the cursor is gone"
    );
}

#[test]
fn read_batch_consumes_in_order_with_one_cursor_move_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    for i in 0..10 {
        q.enqueue(&job(i)).unwrap();
    }
    let mut seen = Vec::new();
    let n = q
        .read_batch(4, |seq, m| seen.push((seq, m.id.to_native())))
        .unwrap();
    assert_eq!(n, 4);
    // A second handle of the same name starts where the batch ended.
    let mut other = q.try_clone().unwrap();
    assert_eq!(other.dequeue().unwrap(), Some(job(4)));
    let n = q
        .read_batch(100, |seq, m| seen.push((seq, m.id.to_native())))
        .unwrap();
    assert_eq!(n, 5, "the batch stops at the tail");
    let ids: Vec<(u64, u64)> = (0..10).filter(|&i| i != 4).map(|i| (i, i)).collect();
    assert_eq!(seen, ids);
    assert_eq!(q.read_batch(8, |_, _| panic!("empty")).unwrap(), 0);
    assert_eq!(other.dequeue().unwrap(), None);
}

#[test]
fn enqueue_bytes_appends_validated_pre_serialized_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = small().create::<Job>(dir.path()).unwrap();
    let bytes = crate::to_bytes(&job(7)).unwrap();
    assert_eq!(q.enqueue_bytes(&bytes).unwrap(), 0);
    assert_eq!(q.enqueue_bytes(&bytes).unwrap(), 1);
    let other = crate::to_bytes(&Other { x: 1 }).unwrap();
    assert!(matches!(
        q.enqueue_bytes(&other[..2]),
        Err(QueueError::Deserialization { .. })
    ));
    assert_eq!(q.dequeue().unwrap(), Some(job(7)));
    assert_eq!(q.dequeue().unwrap(), Some(job(7)));
    assert_eq!(q.dequeue().unwrap(), None);
}

#[test]
fn warm_up_returns_once_the_first_segment_file_is_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let spares = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(".spare-")
            })
            .count()
    };
    let mut q = small().create::<Job>(dir.path()).unwrap();
    assert!(
        q.warm_up(Duration::from_secs(30)),
        "prepared within the timeout"
    );
    assert_eq!(spares(), 1, "the first segment's file is ready");
    q.enqueue(&job(1)).unwrap();
    assert_eq!(spares(), 0, "the first segment was made from it");
    assert!(
        q.warm_up(Duration::ZERO),
        "nothing being prepared: returns at once"
    );
    assert_eq!(q.dequeue().unwrap().unwrap().id, 1);
}

#[test]
fn a_producer_handle_holds_back_no_capacity_for_a_consumer_that_never_reads() {
    // An ordinary handle registers its consumer ("default") when it opens: with the messages read
    // under another name only, the producer stops at the capacity.
    let dir = tempfile::tempdir().unwrap();
    let mut plain = small().capacity(10).create::<Job>(dir.path()).unwrap();
    let mut risk = QueueOptions::new()
        .consumer("risk")
        .open::<Job>(dir.path())
        .unwrap();
    for i in 0..10 {
        plain.enqueue(&job(i)).unwrap();
        assert_eq!(risk.dequeue().unwrap().unwrap().id, i);
    }
    match plain.enqueue(&job(10)) {
        Err(e @ QueueError::Full { .. }) => {
            assert!(e.to_string().contains(r#"consumer "default""#), "{e}");
        }
        other => panic!("expected Full, got {other:?}"),
    }

    // A producer handle registers nothing until it reads.
    let dir = tempfile::tempdir().unwrap();
    let mut producer = small()
        .capacity(10)
        .producer()
        .create::<Job>(dir.path())
        .unwrap();
    let mut risk = QueueOptions::new()
        .consumer("risk")
        .open::<Job>(dir.path())
        .unwrap();
    for i in 0..100 {
        producer.enqueue(&job(i)).unwrap();
        assert_eq!(risk.dequeue().unwrap().unwrap().id, i);
    }
    for i in 100..110 {
        producer.enqueue(&job(i)).unwrap();
    }
    assert!(
        matches!(producer.enqueue(&job(110)), Err(QueueError::Full { .. })),
        "risk's backlog is the bound"
    );
    // Its first read registers "default" at the earliest message still stored.
    assert_eq!(producer.dequeue().unwrap().unwrap().id, 0);
    assert_eq!(producer.consumer_name(), crate::DEFAULT_CONSUMER);
    // Handles for other names made from it register theirs at once.
    let audit = producer.consumer("audit").unwrap();
    drop(audit);
    assert!(producer.remove_consumer("audit"));
}

#[test]
fn deliveries_cross_segments_and_survive_a_restart_of_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut p = small().producer().create::<Job>(&path).unwrap();
    for i in 0..300 {
        p.enqueue(&job(i)).unwrap();
    }
    current_thread().block_on(async {
        let mut expect = 0;
        for round in 0..30u64 {
            let q = ReplicatedQueueImpl::<Job>::open(&path).unwrap();
            for i in 0..=(round % 3) {
                let d = tokio::time::timeout(Duration::from_secs(5), q.recv_delivery())
                    .await
                    .unwrap_or_else(|_| panic!("round {round} message {i}: no delivery"))
                    .unwrap();
                assert_eq!(d.seq(), expect, "round {round}");
                assert_eq!(d.message(), &job(expect));
                if i < round % 3 {
                    assert!(d.ack());
                    expect += 1;
                } else {
                    std::mem::forget(d); // a crash: no release, no ack
                }
            }
        }
        let q = ReplicatedQueueImpl::<Job>::open(&path).unwrap();
        while expect < 300 {
            let d = tokio::time::timeout(Duration::from_secs(5), q.recv_delivery())
                .await
                .unwrap_or_else(|_| panic!("message {expect}: no delivery"))
                .unwrap();
            assert_eq!(d.seq(), expect);
            assert!(d.ack());
            expect += 1;
        }
    });
}

/// A removed cursor's slot is reused (generation + 1) once the reuse delay has passed, and a
/// live handle still holding the removed cursor never moves the new owner's cursor: it notices
/// the generation changed and registers its name again (here: finds no slot, then one).
#[test]
fn a_removed_cursor_slot_is_reused_and_its_stale_holder_stays_out() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    // Lease 10 ms: slots are reused 50 ms after their removal.
    let mut q = small()
        .lease_timeout(Duration::from_millis(10))
        .create::<Job>(&path)
        .unwrap();
    for i in 0..5 {
        q.enqueue(&job(i)).unwrap();
    }
    let mut stale = q.consumer("stale").unwrap();
    assert_eq!(stale.dequeue().unwrap(), Some(job(0)));
    // Fill every other slot ("default" holds one).
    let fillers: Vec<JournalQueue<Job>> = (0..62)
        .map(|i| q.consumer(&format!("f{i}")).unwrap())
        .collect();
    let slot_of = |name: &str| {
        crate::consumer_slots(&path)
            .unwrap()
            .into_iter()
            .find(|s| s.name.as_deref() == Some(name))
            .map(|s| (s.slot, s.generation))
    };
    let (stale_slot, stale_gen) = slot_of("stale").unwrap();
    assert!(q.remove_consumer("stale"));
    // Not reusable yet: the error says when it will be.
    let err = q.consumer("taker").unwrap_err();
    assert!(err.to_string().contains("can be reused"), "{err}");
    // After the delay, "taker" gets the slot, one generation on, at the position the stale
    // holder would expect (1): a holder without the generation check would move it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let taker = loop {
        match QueueOptions::new()
            .consumer("taker")
            .start_at(StartAt::Seq(1))
            .open::<Job>(&path)
        {
            Ok(t) => break t,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(slot_of("taker"), Some((stale_slot, stale_gen + 1)));
    let taker_next = || {
        crate::inspect(&path)
            .unwrap()
            .cursors
            .iter()
            .find(|c| c.name == "taker")
            .unwrap()
            .next_seq
    };
    assert_eq!(taker_next(), 1);
    // The stale holder reads on: it must register "stale" again, and there is no slot.
    let err = stale.dequeue().unwrap_err();
    assert!(err.to_string().contains("consumer slots"), "{err}");
    assert_eq!(
        taker_next(),
        1,
        "the stale holder did not touch the reused slot"
    );
    // With a slot free again, it registers anew at the earliest message.
    drop(fillers);
    assert!(q.remove_consumer("f0"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        match stale.dequeue() {
            Ok(got) => break got,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(got, Some(job(0)));
    assert_eq!(taker_next(), 1);
    drop(taker);
    // Replica cursors are not removable through the consumer API.
    assert!(!q.remove_consumer("replica:node-b"));
    assert!(matches!(
        crate::remove_consumer(&path, "replica:node-b"),
        Err(QueueError::InvalidConfig(_))
    ));
}

/// `inspect` on a queue a producer is writing and rolling as fast as it can: never a false
/// "records missing" (the election reads a node's position this way; an error there kept a node
/// from advertising, and a less up-to-date node took the lease).
#[test]
fn inspect_reads_a_queue_that_rolls_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let mut q = QueueOptions::new()
        .segment_size(1 << 20)
        .capacity(1 << 30)
        .create::<Job>(&path)
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut id = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && id < 5_000_000 {
                match q.enqueue(&job(id)) {
                    Ok(_) => id += 1,
                    Err(QueueError::Full { .. }) => {
                        let mut c = q.consumer("drain").unwrap();
                        while c.dequeue().unwrap().is_some() {}
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            id
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut looks = 0;
    let mut last = 0;
    while std::time::Instant::now() < until {
        let info = crate::inspect(&path).unwrap_or_else(|e| panic!("look {looks}: {e}"));
        last = info.last_seq.unwrap_or(0).max(last);
        looks += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(
        written > 0 && looks > 10,
        "{written} written, {looks} looks"
    );
    eprintln!("{looks} looks while {written} records were written (last seen {last})");
}
