//! The Kafka sink and source against a real Kafka-protocol broker, `tansu` (SQLite storage, its
//! own loopback port and data directory): killed at exact crash points, killed mid-stream
//! (`Running::kill`) and restarted, and with the broker killed (`kill -9`) and restarted under
//! them; every message arrives, none is lost, and every duplicate is a resend of a whole batch
//! (same key and `repliq-seq` header), at most the batches in flight. Dead letters: a record the
//! broker refuses (tansu validates records against a JSON schema of the topic) and source
//! records that are not JSON or do not fit the queue's type.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions, StartAt};
use repliq_connect::{
    ConnectorConfig, ConnectorKind, DeadLetter, Format, KAFKA_SEQ_HEADER, KafkaOutOfRange,
    KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig, KafkaStart, RetryConfig, Stats,
    spawn,
};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use support::{At, Order, Tansu, order, tally};

/// One broker at a time: the tests' timings assume the two cores are not shared by two.
static ONE_BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BATCH: u64 = 256;

/// How long the broker stays down after a `kill -9`: longer than the connectors' `timeout_ms`.
const DOWN: Duration = Duration::from_millis(3000);

fn base(name: &str, queue: &Path, dead: Option<&Path>, kind: ConnectorKind) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        queue: queue.into(),
        format: Format::Json,
        dead_letter: dead.map(Into::into),
        batch: BATCH as usize,
        retry: RetryConfig {
            initial_ms: 20,
            max_ms: 300,
        },
        kind,
        unknown: Default::default(),
    }
}

fn sink_cfg(broker: &str, topic: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        brokers: vec![broker.into()],
        topic: topic.into(),
        partition: 0,
        timeout_ms: 2000,
    }
}

fn source_cfg(broker: &str, topic: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        brokers: vec![broker.into()],
        topic: topic.into(),
        partition: 0,
        start: KafkaStart::Earliest,
        fetch_max_bytes: 1 << 20,
        fetch_ms: 200,
        on_out_of_range: KafkaOutOfRange::Error,
        timeout_ms: 2000,
    }
}

/// Logs the connectors' warnings (retries, dead letters) into the test's output.
fn log() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn client(broker: &str) -> Client {
    ClientBuilder::new(vec![broker.into()])
        .build()
        .await
        .expect("connects to tansu")
}

async fn create_topic(broker: &str, topic: &str) {
    client(broker)
        .await
        .controller_client()
        .unwrap()
        .create_topic(topic, 1, 1, 5000)
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic}: {e}"));
}

async fn partition(broker: &str, topic: &str) -> PartitionClient {
    client(broker)
        .await
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap()
}

/// Produces `bodies` to partition 0 of `topic`, 500 a request, keys `m-<i>`.
async fn produce(broker: &str, topic: &str, bodies: Vec<Vec<u8>>) {
    let p = partition(broker, topic).await;
    let records: Vec<Record> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Record {
            key: Some(format!("m-{i}").into_bytes()),
            value: Some(body),
            headers: Default::default(),
            timestamp: DateTime::<Utc>::from_timestamp_millis(1_735_689_600_000).unwrap(),
        })
        .collect();
    for chunk in records.chunks(500) {
        p.produce(chunk.to_vec(), Compression::NoCompression)
            .await
            .unwrap();
    }
}

/// A record the sink wrote, read back.
struct Got {
    key: String,
    seq: u64,
    order: Order,
}

/// Reads partition 0 of `topic` from offset 0 to its end.
async fn read_all(broker: &str, topic: &str) -> Vec<Got> {
    let p = partition(broker, topic).await;
    let end = p.get_offset(OffsetAt::Latest).await.unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < end {
        assert!(Instant::now() < deadline, "{topic}: read {next} of {end}");
        let (records, _) = p.fetch_records(next, 1..(4 << 20), 500).await.unwrap();
        for r in records {
            next = r.offset + 1;
            let seq = String::from_utf8(r.record.headers[KAFKA_SEQ_HEADER].clone()).unwrap();
            out.push(Got {
                key: String::from_utf8(r.record.key.unwrap()).unwrap(),
                seq: seq.parse().unwrap(),
                order: serde_json::from_slice(&r.record.value.unwrap()).unwrap(),
            });
        }
    }
    out
}

/// Every record carries its own sequence in key and header, the same order under one sequence;
/// every duplicate belongs to a whole batch sent again: the batches are the runs of `BATCH`
/// sequences from 0 (a sink commits whole batches, and the queue was full before it started), and
/// every sequence of a batch arrived equally often. Returns the number of batches sent again.
fn resends_are_whole_batches(connector: &str, got: &[Got]) -> u64 {
    let mut by_seq: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for g in got {
        assert_eq!(
            g.key,
            format!("{connector}-{}", g.seq),
            "key matches header"
        );
        assert_eq!(g.order, order(g.order.id), "body intact");
        let e = by_seq.entry(g.seq).or_insert((g.order.id, 0));
        assert_eq!(e.0, g.order.id, "seq {} carries two orders", g.seq);
        e.1 += 1;
    }
    let mut copies: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (seq, (_, n)) in &by_seq {
        copies.entry(seq / BATCH).or_default().insert(*n);
    }
    for (batch, counts) in &copies {
        assert_eq!(
            counts.len(),
            1,
            "batch {batch} (sequences {}..{}) arrived partly duplicated: copies {counts:?}",
            batch * BATCH,
            (batch + 1) * BATCH
        );
    }
    copies
        .values()
        .map(|c| c.first().copied().unwrap_or(1) - 1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_loses_nothing_at_crash_points_connector_kills_and_broker_kills() {
    const M: u64 = 8_000;
    let _one = ONE_BROKER.lock().await;
    log();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tansu::start(&dir.path().join("tansu"), &[]);
    let broker = server.broker();
    create_topic(&broker, "out.orders").await;

    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    for i in 0..M {
        q.enqueue(&order(i)).unwrap();
    }
    let cfg = base(
        "to-kafka",
        &queue,
        None,
        ConnectorKind::KafkaSink(sink_cfg(&broker, "out.orders")),
    );
    let stats = Arc::new(Stats::default());
    let crashes = support::crash_sink_at(
        "kafka sink",
        &cfg,
        &stats,
        &[
            (At::Before, 2),
            (At::After, 2),
            (At::Before, 3),
            (At::After, 1),
        ],
        || KafkaSink::new("to-kafka", sink_cfg(&broker, "out.orders")).unwrap(),
    )
    .await;
    // Killed mid-stream (the task aborted wherever it is), started again.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("sink progress", 60, || s.snapshot().forwarded >= BATCH).await;
    running.kill().await;
    let killed_at = s.snapshot().forwarded;
    // Then the broker dies under the running sink and comes back.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("sink progress after the kill", 60, || {
        s.snapshot().forwarded >= BATCH
    })
    .await;
    server.kill();
    let broker_killed_at = s.snapshot().forwarded;
    // Down longer than `timeout_ms`: rskafka's own retries give up, the connector's take over.
    tokio::time::sleep(DOWN).await;
    server.restart();
    until("the sink to finish", 120, || {
        let s = s.snapshot();
        s.lag == 0 && s.forwarded > broker_killed_at
    })
    .await;
    let retries = s.snapshot().retries;
    running.stop().await.unwrap();
    let got = read_all(&broker, "out.orders").await;
    let resent = resends_are_whole_batches("to-kafka", &got);
    let ids: Vec<u64> = got.iter().map(|g| g.order.id).collect();
    let (received, lost, dups) = tally(M, &ids);
    println!(
        "kafka sink: sent {M}, received {received}, lost {lost}, duplicated {dups} in {resent} \
         resent batches (killed at a crash point {crashes}x, 2 after a confirmed produce; task \
         killed 1x after {killed_at} of its own confirmed; broker killed 1x after {broker_killed_at}; \
         {retries} retries; every duplicate has its original's key and repliq-seq) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert!(retries > 0, "the broker's absence went unnoticed");
    // Two crashes after a confirmed produce, one task kill, one broker kill: a batch each.
    assert!(
        dups <= 4 * BATCH,
        "{dups} duplicates exceed the batches in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_loses_nothing_at_crash_points_connector_kills_and_broker_kills() {
    const M: u64 = 8_000;
    let _one = ONE_BROKER.lock().await;
    log();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tansu::start(&dir.path().join("tansu"), &[]);
    let broker = server.broker();
    create_topic(&broker, "in.orders").await;
    produce(
        &broker,
        "in.orders",
        (0..M)
            .map(|i| serde_json::to_vec(&order(i)).unwrap())
            .collect(),
    )
    .await;

    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    let cfg = base(
        "from-kafka",
        &inbox,
        None,
        ConnectorKind::KafkaSource(source_cfg(&broker, "in.orders")),
    );
    let stats = Arc::new(Stats::default());
    let crashes = support::crash_source_at(
        "kafka source",
        &cfg,
        &stats,
        &[
            ("fetch", At::After, 2),
            ("ack", At::Before, 2),
            ("ack", At::After, 1),
        ],
        || KafkaSource::new("from-kafka", &inbox, source_cfg(&broker, "in.orders")).unwrap(),
    )
    .await;
    let mut reader = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<Order>(&inbox)
        .unwrap();
    let mut ids = Vec::new();
    let mut drain = |ids: &mut Vec<u64>| {
        while let Some(o) = reader.dequeue().unwrap() {
            assert_eq!(o, order(o.id), "body intact");
            ids.push(o.id);
        }
    };
    drain(&mut ids);
    let after_crashes = ids.len();
    // Killed mid-stream, started again; then the broker killed under it and restarted.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("source progress", 60, || s.snapshot().forwarded >= BATCH).await;
    running.kill().await;
    let killed_at = s.snapshot().forwarded;
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("source progress after the kill", 60, || {
        s.snapshot().forwarded >= BATCH
    })
    .await;
    server.kill();
    let broker_killed_at = s.snapshot().forwarded;
    // Down longer than `timeout_ms`: rskafka's own retries give up, the connector's take over.
    tokio::time::sleep(DOWN).await;
    server.restart();
    let mut distinct: BTreeSet<u64> = ids.iter().copied().collect();
    // Until every record is there, or nothing new came for 5 s (the rest is lost: counted).
    let mut last_new = Instant::now();
    until("the source to finish", 120, || {
        let from = ids.len();
        drain(&mut ids);
        distinct.extend(&ids[from..]);
        if ids.len() > from {
            last_new = Instant::now();
        }
        distinct.len() as u64 >= M || last_new.elapsed() > Duration::from_secs(5)
    })
    .await;
    // Anything still in flight would be enqueued now: wait a fetch, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut ids);
    let retries = s.snapshot().retries;
    running.stop().await.unwrap();
    let (received, lost, dups) = tally(M, &ids);
    let crash_dups = tally(M, &ids[..after_crashes]).2;
    println!(
        "kafka source: sent {M}, received {received}, lost {lost}, duplicated {dups}: \
         {crash_dups} after {crashes} crash points, {} after 1 task kill (after {killed_at} \
         enqueued) and 1 broker kill (after {broker_killed_at}; {retries} retries) in {:.1} s",
        dups - crash_dups,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert!(retries > 0, "the broker's absence went unnoticed");
    // Only the crash before the offset write enqueued a batch that is read again.
    assert!(
        crash_dups <= BATCH,
        "{crash_dups} duplicates exceed the batch in flight"
    );
    // The task kill: the batch being enqueued. The broker kill: none (the offset is ours).
    assert!(
        dups - crash_dups <= BATCH,
        "{} duplicates exceed the batch in flight",
        dups - crash_dups
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_what_the_broker_refuses_and_records_that_do_not_fit() {
    let _one = ONE_BROKER.lock().await;
    log();
    let dir = tempfile::tempdir().unwrap();
    // tansu validates the records of topic `strict.orders` against this schema: at most 100 of
    // an item.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "value": {
                "type": "object",
                "properties": { "qty": { "type": "integer", "maximum": 100 } },
                "required": ["id", "item", "qty"]
            }
        }
    });
    let server = Tansu::start(&dir.path().join("tansu"), &[("strict.orders", schema)]);
    let broker = server.broker();
    create_topic(&broker, "strict.orders").await;

    // Sink: the second of four records breaks the schema; the broker refuses the whole batch,
    // the sink finds the record one by one.
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    let mut big = order(1);
    big.qty = 500;
    for o in [order(0), big, order(2), order(3)] {
        q.enqueue(&o).unwrap();
    }
    let dead = dir.path().join("orders.dead");
    let running = spawn(base(
        "kafka-out",
        &queue,
        Some(&dead),
        ConnectorKind::KafkaSink(sink_cfg(&broker, "strict.orders")),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the sink's batch", 60, || {
        let s = s.snapshot();
        s.forwarded == 3 && s.dead_letters == 1 && s.lag == 0
    })
    .await;
    running.stop().await.unwrap();
    let got: Vec<u64> = read_all(&broker, "strict.orders")
        .await
        .iter()
        .map(|g| g.order.id)
        .collect();
    assert_eq!(got, vec![0, 2, 3], "each written once, in order");
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letter = dq.dequeue().unwrap().unwrap();
    assert_eq!(letter.seq, Some(1));
    assert!(letter.reason.contains("InvalidRecord"), "{}", letter.reason);
    assert!(dq.dequeue().unwrap().is_none());
    println!(
        "kafka sink: 4 messages, 3 acknowledged, 1 dead-lettered: {}",
        letter.reason
    );

    // Source: two of five records are not JSON or do not fit the queue's type.
    create_topic(&broker, "in.mixed").await;
    produce(
        &broker,
        "in.mixed",
        vec![
            serde_json::to_vec(&order(1)).unwrap(),
            b"not json".to_vec(),
            br#"{"id": 2}"#.to_vec(),
            serde_json::to_vec(&order(3)).unwrap(),
            serde_json::to_vec(&order(4)).unwrap(),
        ],
    )
    .await;
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    let dead = dir.path().join("inbox.dead");
    let running = spawn(base(
        "kafka-in",
        &inbox,
        Some(&dead),
        ConnectorKind::KafkaSource(source_cfg(&broker, "in.mixed")),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the source's batch", 60, || {
        let s = s.snapshot();
        s.forwarded == 3 && s.dead_letters == 2
    })
    .await;
    running.stop().await.unwrap();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .open::<Order>(&inbox)
        .unwrap();
    let got: Vec<Order> = std::iter::from_fn(|| reader.dequeue().unwrap()).collect();
    assert_eq!(got, vec![order(1), order(3), order(4)]);
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letters: Vec<DeadLetter> = std::iter::from_fn(|| dq.dequeue().unwrap()).collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].remote_id.as_deref(), Some("in.mixed/0@1"));
    assert!(
        letters[0].reason.contains("not JSON"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[1].remote_id.as_deref(), Some("in.mixed/0@2"));
    assert!(
        letters[1].reason.contains("missing field \"item\""),
        "{}",
        letters[1].reason
    );
    // The offset file says where a restart goes on: after the last record.
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repliq_connect::kafka_offset_file(&inbox, "kafka-in")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["next_offset"], 5, "{stored}");
    println!(
        "kafka source: 5 records, 3 enqueued, 2 dead-lettered: {} / {}",
        letters[0].reason, letters[1].reason
    );
}

/// The broker's own durability, which the tests above stand on: records tansu acknowledged are
/// there after a `kill -9` and a restart on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_keeps_what_it_acknowledged_across_kill_9() {
    const N: u64 = 5_000;
    let _one = ONE_BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tansu::start(&dir.path().join("tansu"), &[]);
    let broker = server.broker();
    create_topic(&broker, "durable").await;
    let started = Instant::now();
    produce(
        &broker,
        "durable",
        (0..N)
            .map(|i| serde_json::to_vec(&order(i)).unwrap())
            .collect(),
    )
    .await;
    let took = started.elapsed();
    server.kill();
    server.restart();
    let p = partition(&broker, "durable").await;
    let end = p.get_offset(OffsetAt::Latest).await.unwrap();
    let mut ids = Vec::new();
    let mut next = 0;
    while next < end {
        let (records, _) = p.fetch_records(next, 1..(4 << 20), 500).await.unwrap();
        for r in records {
            next = r.offset + 1;
            ids.push(
                serde_json::from_slice::<Order>(&r.record.value.unwrap())
                    .unwrap()
                    .id,
            );
        }
    }
    let (received, lost, dups) = tally(N, &ids);
    println!(
        "tansu: {N} records acknowledged (500 a request, {:.0} records/s), kill -9, restart: \
         received {received}, lost {lost}, duplicated {dups}",
        N as f64 / took.as_secs_f64()
    );
    assert_eq!((lost, dups), (0, 0));
}

/// A stored offset the partition does not have (here: past its end, as after the topic was
/// created anew): `on_out_of_range: error` stays there, failing every fetch, and `earliest` goes
/// on from the partition's first record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_out_of_range_offset_waits_or_restarts_at_earliest() {
    let _one = ONE_BROKER.lock().await;
    log();
    let dir = tempfile::tempdir().unwrap();
    let server = Tansu::start(&dir.path().join("tansu"), &[]);
    let broker = server.broker();
    create_topic(&broker, "in.orders").await;
    produce(
        &broker,
        "in.orders",
        (0..3)
            .map(|i| serde_json::to_vec(&order(i)).unwrap())
            .collect(),
    )
    .await;
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    std::fs::write(
        repliq_connect::kafka_offset_file(&inbox, "from-kafka"),
        r#"{"topic":"in.orders","partition":0,"next_offset":1000}"#,
    )
    .unwrap();
    let mut kc = source_cfg(&broker, "in.orders");
    let running = spawn(base(
        "from-kafka",
        &inbox,
        None,
        ConnectorKind::KafkaSource(kc.clone()),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("a failed fetch", 30, || s.snapshot().retries >= 2).await;
    running.stop().await.unwrap();
    assert_eq!(s.snapshot().forwarded, 0, "nothing skipped or read");

    kc.on_out_of_range = KafkaOutOfRange::Earliest;
    let running = spawn(base(
        "from-kafka",
        &inbox,
        None,
        ConnectorKind::KafkaSource(kc),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the records from the start", 30, || {
        s.snapshot().forwarded == 3
    })
    .await;
    running.stop().await.unwrap();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .open::<Order>(&inbox)
        .unwrap();
    let got: Vec<Order> = std::iter::from_fn(|| reader.dequeue().unwrap()).collect();
    assert_eq!(got, vec![order(0), order(1), order(2)]);
    println!(
        "kafka source: offset 1000 of a 3-record partition: error waits (0 read), earliest reads 3"
    );
}
