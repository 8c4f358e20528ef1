//! The Redis Streams sink and source against a real `redis-server` on loopback: the connector
//! and, separately, the server are killed mid-stream and restarted; every message arrives, none
//! is lost, and duplicates stay within the documented window. Dead letters: a message the
//! server rejects, JSON that does not fit, an entry the dedup check finds missing.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions, StartAt};
use repliq_connect::{
    ConnectError, ConnectorConfig, ConnectorKind, DeadLetter, Format, RedisSinkConfig,
    RedisSourceConfig, RetryConfig, Running, spawn,
};
use support::{At, Order, Redis, order, redis_available, tally};

fn base(name: &str, queue: &Path, dead: Option<&Path>, kind: ConnectorKind) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        queue: queue.into(),
        format: Format::Json,
        dead_letter: dead.map(Into::into),
        batch: 256,
        retry: RetryConfig {
            initial_ms: 20,
            max_ms: 200,
        },
        kind,
        unknown: Default::default(),
    }
}

fn sink(url: &str, stream: &str) -> ConnectorKind {
    ConnectorKind::RedisSink(RedisSinkConfig {
        url: url.into(),
        stream: stream.into(),
        field: "data".into(),
        dedup: true,
        maxlen: None,
    })
}

fn source(url: &str, stream: &str) -> ConnectorKind {
    ConnectorKind::RedisSource(RedisSourceConfig {
        url: url.into(),
        stream: stream.into(),
        group: "g".into(),
        consumer: Some("bridge".into()),
        field: "data".into(),
        block_ms: 200,
        claim_idle_ms: 1000,
    })
}

/// Waits until `done` or the deadline (then fails with `what`).
async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every entry of `stream`: (entry ID, the message's `data` as an Order).
fn stream_entries(r: &Redis, stream: &str) -> Vec<(String, Order)> {
    let mut conn = r.conn();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let data: Vec<u8> = e.get("data").expect("a data field");
            (
                e.id,
                serde_json::from_slice(&data).expect("JSON of an Order"),
            )
        })
        .collect()
}

fn dead_letters(path: &Path) -> Vec<DeadLetter> {
    let mut q = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<DeadLetter>(path)
        .unwrap();
    std::iter::from_fn(|| q.dequeue().unwrap()).collect()
}

async fn progress(running: Running, past: u64, secs: u64) -> Running {
    let stats = running.stats().clone();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while stats.snapshot().forwarded < past {
        if running.is_finished() {
            let name = running.name().to_owned();
            panic!(
                "connector {name} stopped: {:?} (stats {:?})",
                running.join().await,
                stats.snapshot()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no progress past {past}: {:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_loses_nothing_when_connector_and_server_are_killed() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Redis::start(&dir.path().join("redis"));
    let queue = dir.path().join("orders");
    let mut producer = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    const N: u64 = 20_000;
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            producer.enqueue(&order(i)).unwrap();
            if i.is_multiple_of(500) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let cfg = base("to-redis", &queue, None, sink(&server.url(), "orders"));
    let started = Instant::now();
    let mut resent_refused = 0;
    let mut connector_kills = 0;
    let mut server_kills = 0;
    for round in 0..6 {
        let mut running = progress(spawn(cfg.clone()).unwrap(), 1000, 30).await;
        if round % 2 == 1 {
            // The server dies under the running connector, which retries until it is back.
            server.kill();
            server_kills += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.restart();
            let before = running.stats().snapshot().forwarded;
            running = progress(running, before + 500, 30).await;
        }
        resent_refused += running.stats().snapshot().duplicates;
        running.kill().await;
        connector_kills += 1;
    }
    writer.join().unwrap();
    let running = spawn(cfg.clone()).unwrap();
    let stats = running.stats().clone();
    let mut conn = server.conn();
    until("the whole queue in the stream", 120, || {
        redis::cmd("XLEN")
            .arg("orders")
            .query::<u64>(&mut conn)
            .unwrap()
            >= N
            && stats.snapshot().lag == 0
    })
    .await;
    running.stop().await.unwrap();

    let entries = stream_entries(&server, "orders");
    for (id, o) in &entries {
        // The dedup key: the entry ID is the record's sequence (the producer wrote id = seq).
        assert_eq!(id, &format!("{}-1", o.id));
        assert_eq!(o, &order(o.id), "the message crossed intact");
    }
    let ids: Vec<u64> = entries.iter().map(|(_, o)| o.id).collect();
    let (received, lost, dups) = tally(N, &ids);
    println!(
        "redis sink: sent {N}, received {received}, lost {lost}, duplicated {dups} \
         (connector killed {connector_kills}x, server killed {server_kills}x; \
         resends refused by the dedup ID: {}; {:.1} s)",
        resent_refused + stats.snapshot().duplicates,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(dups, 0, "the entry ID dedups every resend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_loses_nothing_when_connector_and_server_are_killed() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Redis::start(&dir.path().join("redis"));
    let queue = dir.path().join("orders");
    drop(JournalQueue::<Order>::new(&queue, 1 << 20).unwrap());
    const N: u64 = 20_000;
    let url = server.url();
    // The upstream producer: explicit IDs make its own retries (after the server kill)
    // idempotent, so the count below measures the connector alone.
    let writer = tokio::task::spawn_blocking(move || {
        let mut conn = None;
        let mut i = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while i < N {
            assert!(Instant::now() < deadline, "upstream producer stuck at {i}");
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                },
            };
            // Chunks of 50 in one pipeline (one fsync for all under appendfsync always).
            let end = (i + 50).min(N);
            let mut pipe = redis::pipe();
            for k in i..end {
                pipe.cmd("XADD")
                    .arg("incoming")
                    .arg(format!("{}-1", k + 1))
                    .arg("data")
                    .arg(serde_json::to_vec(&order(k)).unwrap());
            }
            use redis::ConnectionLike;
            let replies = c.req_packed_commands(&pipe.get_packed_pipeline(), 0, (end - i) as usize);
            let written = replies.is_ok_and(|r| {
                r.iter().all(|v| match v {
                    redis::Value::ServerError(e) => {
                        e.details().is_some_and(|d| d.contains("equal or smaller"))
                    }
                    _ => true,
                })
            });
            if written {
                i = end;
                std::thread::sleep(Duration::from_millis(2));
            } else {
                conn = None;
            }
        }
    });
    let cfg = base(
        "from-redis",
        &queue,
        None,
        source(&server.url(), "incoming"),
    );
    let mut connector_kills = 0;
    let mut server_kills = 0;
    for round in 0..6 {
        let mut running = progress(spawn(cfg.clone()).unwrap(), 1000, 30).await;
        if round % 2 == 1 {
            server.kill();
            server_kills += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.restart();
            let before = running.stats().snapshot().forwarded;
            running = progress(running, before + 500, 30).await;
        }
        running.kill().await;
        connector_kills += 1;
    }
    writer.await.unwrap();
    let running = spawn(cfg.clone()).unwrap();
    let mut conn = server.conn();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<Order>(&queue)
        .unwrap();
    let mut ids = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    until("every entry in the queue and acknowledged", 120, || {
        while let Some(o) = reader.dequeue().unwrap() {
            assert_eq!(o, order(o.id), "the message crossed intact");
            distinct.insert(o.id);
            ids.push(o.id);
        }
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg("incoming")
            .arg("g")
            .query(&mut conn)
            .unwrap();
        let none_pending =
            matches!(&pending, redis::Value::Array(a) if a.first() == Some(&redis::Value::Int(0)));
        distinct.len() as u64 >= N && none_pending
    })
    .await;
    running.stop().await.unwrap();
    let (received, lost, dups) = tally(N, &ids);
    println!(
        "redis source: sent {N}, received {received}, lost {lost}, duplicated {dups} \
         (connector killed {connector_kills}x, server killed {server_kills}x; window: one \
         batch of 256 per kill)"
    );
    assert_eq!(lost, 0);
    assert!(
        dups <= (connector_kills + server_kills) * 256,
        "{dups} duplicates exceed one batch per kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_and_misfit_json_are_dead_lettered() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Redis::start(&dir.path().join("redis"));
    let mut conn = server.conn();

    // Sink: the key holds a string, so Redis refuses every XADD (WRONGTYPE); and a stream
    // whose top ID lies past the queue's sequences (another writer) fails the dedup check.
    redis::cmd("SET")
        .arg("not-a-stream")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("XADD")
        .arg("foreign")
        .arg("1000000-1")
        .arg("data")
        .arg("{}")
        .query::<String>(&mut conn)
        .unwrap();
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    for i in 0..10 {
        q.enqueue(&order(i)).unwrap();
    }
    for (name, stream) in [("wrongtype", "not-a-stream"), ("foreign", "foreign")] {
        let dead = dir.path().join(format!("{name}.dead"));
        let running = spawn(base(name, &queue, Some(&dead), sink(&server.url(), stream))).unwrap();
        let stats = running.stats().clone();
        until("dead letters", 30, || stats.snapshot().dead_letters == 10).await;
        until("the cursor past them", 30, || stats.snapshot().lag == 0).await;
        running.stop().await.unwrap();
        let letters = dead_letters(&dead);
        assert_eq!(letters.len(), 10);
        for (i, l) in letters.iter().enumerate() {
            assert_eq!(l.seq, Some(i as u64));
            assert_eq!(l.direction, "sink");
            let o: Order = serde_json::from_slice(&l.body).unwrap();
            assert_eq!(o, order(i as u64));
            match name {
                "wrongtype" => assert!(l.reason.contains("WRONGTYPE"), "{}", l.reason),
                _ => assert!(l.reason.contains("did not write"), "{}", l.reason),
            }
        }
        println!(
            "redis sink {name}: 10 rejected, 10 dead-lettered: {:?}",
            letters[0].reason
        );
    }

    // Source: JSON that does not fit the queue's type, and bytes that are not JSON.
    let bodies: [&[u8]; 5] = [
        &serde_json::to_vec(&order(1)).unwrap(),
        b"not json",
        br#"{"id": 2, "qty": 1}"#,
        br#"{"id": "three", "item": "x", "qty": 1}"#,
        &serde_json::to_vec(&order(4)).unwrap(),
    ];
    for b in bodies {
        redis::cmd("XADD")
            .arg("in")
            .arg("*")
            .arg("data")
            .arg(b)
            .query::<String>(&mut conn)
            .unwrap();
    }
    let target = dir.path().join("in");
    drop(JournalQueue::<Order>::new(&target, 1 << 20).unwrap());
    let dead = dir.path().join("in.dead");
    let running = spawn(base(
        "in",
        &target,
        Some(&dead),
        source(&server.url(), "in"),
    ))
    .unwrap();
    let stats = running.stats().clone();
    until("the source's batch", 30, || {
        let s = stats.snapshot();
        s.forwarded == 2 && s.dead_letters == 3
    })
    .await;
    running.stop().await.unwrap();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .open::<Order>(&target)
        .unwrap();
    let got: Vec<Order> = std::iter::from_fn(|| reader.dequeue().unwrap()).collect();
    assert_eq!(got, vec![order(1), order(4)]);
    let letters = dead_letters(&dead);
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("missing field \"item\""), "{reasons:?}");
    assert!(
        reasons[2].contains("/id") && reasons[2].contains("expected an integer"),
        "{reasons:?}"
    );
    assert_eq!(letters[1].body, br#"{"id": 2, "qty": 1}"#);
    assert!(
        letters
            .iter()
            .all(|l| l.remote_id.is_some() && l.direction == "source")
    );
    println!("redis source: 5 entries, 2 enqueued, 3 dead-lettered: {reasons:?}");

    // Without a dead-letter queue a misfit stops the source; the entry stays pending upstream.
    redis::cmd("XADD")
        .arg("strict")
        .arg("*")
        .arg("data")
        .arg("[1]")
        .query::<String>(&mut conn)
        .unwrap();
    let running = spawn(base(
        "strict",
        &target,
        None,
        source(&server.url(), "strict"),
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the source did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match running.join().await {
        Err(ConnectError::Undeliverable { reason, .. }) => {
            assert!(reason.contains("expected"), "{reason}")
        }
        other => panic!("expected Undeliverable, got {other:?}"),
    }
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg("strict")
        .arg("g")
        .query(&mut conn)
        .unwrap();
    assert!(
        matches!(&pending, redis::Value::Array(a) if a.first() == Some(&redis::Value::Int(1))),
        "{pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_crash_point_the_sink_and_source_lose_nothing() {
    use std::sync::Arc;

    if !redis_available() {
        return;
    }
    const M: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Redis::start(&dir.path().join("redis"));
    let mut conn = server.conn();

    // Sink: a full queue, crashed before and after the XADDs of several batches.
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    for i in 0..M {
        q.enqueue(&order(i)).unwrap();
    }
    let cfg = base("crash-sink", &queue, None, sink(&server.url(), "crashed"));
    let stats = Arc::new(repliq_connect::Stats::default());
    let crashes = support::crash_sink_at(
        "sink",
        &cfg,
        &stats,
        &[
            (At::Before, 2),
            (At::After, 2),
            (At::Before, 3),
            (At::After, 1),
        ],
        || {
            repliq_connect::RedisSink::new(
                "crash-sink",
                match &cfg.kind {
                    ConnectorKind::RedisSink(c) => c.clone(),
                    _ => unreachable!(),
                },
            )
            .unwrap()
        },
    )
    .await;
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    // Done when the cursor reached the end: then count what the stream holds.
    until("the sink to finish", 60, || {
        s.snapshot().lag == 0 && s.snapshot().forwarded > 0
    })
    .await;
    running.stop().await.unwrap();
    let ids: Vec<u64> = stream_entries(&server, "crashed")
        .iter()
        .map(|(_, o)| o.id)
        .collect();
    let (received, lost, dups) = tally(M, &ids);
    println!(
        "redis sink, killed at a crash point {crashes}x (before/after XADD): sent {M}, \
         received {received}, lost {lost}, duplicated {dups}; resends refused by the dedup ID: {}",
        stats.snapshot().duplicates + s.snapshot().duplicates
    );
    assert_eq!((lost, dups), (0, 0));

    // Source: crashed after a fetch (entries delivered, not enqueued), before an ack (enqueued,
    // not acknowledged) and after one (both done).
    for i in 0..M {
        let _: String = redis::cmd("XADD")
            .arg("upstream")
            .arg("*")
            .arg("data")
            .arg(serde_json::to_vec(&order(i)).unwrap())
            .query(&mut conn)
            .unwrap();
    }
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    let cfg = base(
        "crash-source",
        &inbox,
        None,
        source(&server.url(), "upstream"),
    );
    let crashes = support::crash_source_at(
        "source",
        &cfg,
        &stats,
        &[
            ("fetch", At::After, 2),
            ("ack", At::Before, 3),
            ("ack", At::After, 2),
            ("fetch", At::After, 3),
            ("ack", At::Before, 1),
        ],
        || {
            repliq_connect::RedisSource::new(
                "crash-source",
                match &cfg.kind {
                    ConnectorKind::RedisSource(c) => c.clone(),
                    _ => unreachable!(),
                },
            )
            .unwrap()
        },
    )
    .await;
    let running = spawn(cfg.clone()).unwrap();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<Order>(&inbox)
        .unwrap();
    let mut ids = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    // Done when the group has delivered everything and nothing is pending: then count.
    until("the source to finish", 60, || {
        group_done(&mut conn, "upstream")
    })
    .await;
    while let Some(o) = reader.dequeue().unwrap() {
        distinct.insert(o.id);
        ids.push(o.id);
    }
    running.stop().await.unwrap();
    let (received, lost, dups) = tally(M, &ids);
    println!(
        "redis source, killed at a crash point {crashes}x (after fetch, before/after XACK): \
         sent {M}, received {received}, lost {lost}, duplicated {dups} (window: the batch in \
         flight, 256)"
    );
    assert_eq!(lost, 0);
    assert!(
        dups <= 2 * 256,
        "{dups} duplicates: more than the two enqueued-not-acked batches"
    );
    assert!(dups > 0, "a crash before XACK redelivers its batch");
}

/// Whether group `g` of `stream` has delivered every entry (lag 0) and has none pending.
fn group_done(c: &mut redis::Connection, stream: &str) -> bool {
    let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query(c)
        .unwrap();
    groups.iter().any(|g| {
        let field = |name: &str| {
            g.chunks(2)
                .find(|kv| matches!(&kv[0], redis::Value::BulkString(k) if k == name.as_bytes()))
                .map(|kv| kv[1].clone())
        };
        field("name") == Some(redis::Value::BulkString(b"g".to_vec()))
            && field("pending") == Some(redis::Value::Int(0))
            && field("lag") == Some(redis::Value::Int(0))
    })
}
