//! The RabbitMQ sink and source against a real `rabbitmq-server` on loopback (its own node name,
//! ports and data directory): killed at exact crash points and with the broker killed
//! (`kill -9`) and restarted under them; every message arrives, none is lost, and every
//! duplicate is a resend of the same message (same `message-id`), at most the batches in flight.
//! Dead letters: a message larger than the broker's `max_message_size`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use repliq::{JournalQueue, QueueOptions, StartAt};
use repliq_connect::{
    ConnectorConfig, ConnectorKind, DeadLetter, Format, RabbitMqSink, RabbitMqSinkConfig,
    RabbitMqSource, RabbitMqSourceConfig, RetryConfig, Stats, spawn,
};
use support::{At, Order, RabbitMq, order, tally};

/// One broker at a time: two Erlang nodes booting together on two shared cores take longer than
/// both in turn.
static ONE_BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn base(name: &str, queue: &Path, dead: Option<&Path>, kind: ConnectorKind) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        queue: queue.into(),
        format: Format::Json,
        dead_letter: dead.map(Into::into),
        batch: 256,
        retry: RetryConfig {
            initial_ms: 20,
            max_ms: 300,
        },
        kind,
        unknown: Default::default(),
    }
}

fn sink_cfg(url: &str) -> RabbitMqSinkConfig {
    RabbitMqSinkConfig {
        url: url.into(),
        exchange: String::new(),
        routing_key: "out.orders".into(),
        declare_queue: Some("out.orders".into()),
        queue_type: None,
        confirm_timeout_ms: 10_000,
    }
}

fn source_cfg(url: &str) -> RabbitMqSourceConfig {
    RabbitMqSourceConfig {
        url: url.into(),
        queue: "in.orders".into(),
        declare: true,
        queue_type: None,
        fetch_ms: 200,
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

/// Drains queue `name`: (message-id, order) of every message, in order.
async fn drain(url: &str, name: &str) -> Vec<(String, Order)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    // How many the queue holds (nothing publishes to it any more): read exactly that many. A
    // pause of the broker (a busy machine, a queue recovering after a restart) then does not
    // end the read early and count the rest as lost.
    let held = ch
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count() as usize;
    let mut consumer = ch
        .basic_consume(
            name.into(),
            "check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while out.len() < held {
        let Ok(Some(d)) = tokio::time::timeout_at(deadline, consumer.next()).await else {
            panic!("{name}: read {} of the {held} messages it holds", out.len());
        };
        let d = d.unwrap();
        let id = d.properties.message_id().as_ref().unwrap().to_string();
        out.push((id, serde_json::from_slice(&d.data).unwrap()));
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Publishes `bodies` to queue `name` (declared durable), persistent, confirmed, with message
/// IDs `m-<i>`.
async fn publish(url: &str, name: &str, bodies: impl IntoIterator<Item = Vec<u8>>) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for (i, body) in bodies.into_iter().enumerate() {
        ch.basic_publish(
            "".into(),
            name.into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("m-{i}").into()),
        )
        .await
        .unwrap();
    }
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
    let _ = conn.close(200, "done".into()).await;
}

/// Every duplicate must be a resend of one message: one message-id per order.
fn same_message_id(got: &[(String, Order)]) {
    let mut ids: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (mid, o) in got {
        assert_eq!(*o, order(o.id), "body intact");
        ids.entry(o.id).or_default().insert(mid);
    }
    for (id, mids) in ids {
        assert_eq!(
            mids.len(),
            1,
            "order {id} arrived under message ids {mids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_sink_and_source_lose_nothing_at_crash_points_and_broker_kills() {
    const M: u64 = 5_000;
    let _one = ONE_BROKER.lock().await;
    log();
    let dir = tempfile::tempdir().unwrap();
    let mut server = RabbitMq::start(&dir.path().join("rabbitmq"), "");
    let url = server.url();
    // Both queues exist on the broker's disk before it is killed: a definition only moments old
    // can be lost by a `kill -9`, messages and all (`RabbitMq::stop`); that would be the
    // broker's loss, not the connectors'.
    for name in ["out.orders", "in.orders"] {
        publish(&url, name, std::iter::empty()).await;
    }
    server.stop();
    server.restart();

    // Sink.
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    for i in 0..M {
        q.enqueue(&order(i)).unwrap();
    }
    let cfg = base(
        "to-rabbit",
        &queue,
        None,
        ConnectorKind::RabbitmqSink(sink_cfg(&url)),
    );
    let stats = Arc::new(Stats::default());
    let crashes = support::crash_sink_at(
        "rabbitmq sink",
        &cfg,
        &stats,
        &[
            (At::Before, 2),
            (At::After, 2),
            (At::Before, 3),
            (At::After, 1),
        ],
        || RabbitMqSink::new("to-rabbit", sink_cfg(&url)).unwrap(),
    )
    .await;
    // Then the broker dies under the running sink and comes back.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    let before = stats.snapshot().forwarded;
    until("sink progress", 60, || s.snapshot().forwarded >= 256).await;
    server.kill();
    let killed_at = before + s.snapshot().forwarded;
    server.restart();
    until("the sink to finish", 120, || s.snapshot().lag == 0).await;
    let retries = s.snapshot().retries;
    running.stop().await.unwrap();
    let got = drain(&url, "out.orders").await;
    same_message_id(&got);
    let ids: Vec<u64> = got.iter().map(|(_, o)| o.id).collect();
    let (received, lost, dups) = tally(M, &ids);
    println!(
        "rabbitmq sink: sent {M}, received {received}, lost {lost}, duplicated {dups} (killed at \
         a crash point {crashes}x, broker killed 1x after ~{killed_at} confirmed, {retries} \
         retries; every duplicate has its original's message-id)"
    );
    assert_eq!(lost, 0);
    assert!(
        dups <= (crashes + 1) * 256,
        "{dups} duplicates exceed the batches in flight"
    );

    // Source: the upstream queue, filled before.
    publish(
        &url,
        "in.orders",
        (0..M).map(|i| serde_json::to_vec(&order(i)).unwrap()),
    )
    .await;
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    let cfg = base(
        "from-rabbit",
        &inbox,
        None,
        ConnectorKind::RabbitmqSource(source_cfg(&url)),
    );
    let crashes = support::crash_source_at(
        "rabbitmq source",
        &cfg,
        &stats,
        &[
            ("fetch", At::After, 2),
            ("ack", At::Before, 2),
            ("ack", At::After, 1),
        ],
        || RabbitMqSource::new("from-rabbit", source_cfg(&url)).unwrap(),
    )
    .await;
    // What the crash points left: counted before the broker is killed.
    let mut reader = QueueOptions::new()
        .consumer("check")
        .start_at(StartAt::Earliest)
        .open::<Order>(&inbox)
        .unwrap();
    let mut ids = Vec::new();
    while let Some(o) = reader.dequeue().unwrap() {
        ids.push(o.id);
    }
    let after_crashes = ids.len();
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("source progress", 60, || s.snapshot().forwarded >= 256).await;
    server.kill();
    // Everything acknowledged so far: before the crash points' kills and since.
    let acked_at_kill = after_crashes as u64 + s.snapshot().forwarded;
    server.restart();
    let mut distinct: BTreeSet<u64> = ids.iter().copied().collect();
    let mut report = Instant::now() + Duration::from_secs(10);
    until("the source to finish", 120, || {
        while let Some(o) = reader.dequeue().unwrap() {
            assert_eq!(o, order(o.id));
            distinct.insert(o.id);
            ids.push(o.id);
        }
        if Instant::now() > report {
            println!(
                "source: {} distinct of {M}, stats {:?}",
                distinct.len(),
                s.snapshot()
            );
            report = Instant::now() + Duration::from_secs(10);
        }
        distinct.len() as u64 >= M
    })
    .await;
    // Anything still unacknowledged would come again now: wait, then count.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Some(o) = reader.dequeue().unwrap() {
        ids.push(o.id);
    }
    running.stop().await.unwrap();
    let (received, lost, dups) = tally(M, &ids);
    let crash_dups = tally(M, &ids[..after_crashes]).2;
    println!(
        "rabbitmq source: sent {M}, received {received}, lost {lost}, duplicated {dups}: \
         {crash_dups} after {crashes} connector crashes (window: the batch in flight, 256), {} \
         after 1 broker kill (window: the batch in flight and what was acknowledged before the \
         crash, here {acked_at_kill}: a classic queue does not sync acknowledgements)",
        dups - crash_dups
    );
    assert_eq!(lost, 0);
    assert!(
        crash_dups <= crashes * 256,
        "{crash_dups} duplicates exceed the batches in flight"
    );
    assert!(
        dups - crash_dups <= acked_at_kill + 256,
        "{} duplicates after the broker kill exceed what it had acknowledged",
        dups - crash_dups
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_dead_letters_what_the_broker_rejects_and_json_that_does_not_fit() {
    let _one = ONE_BROKER.lock().await;
    log();
    let dir = tempfile::tempdir().unwrap();
    let server = RabbitMq::start(&dir.path().join("rabbitmq"), "max_message_size = 1024\n");
    let url = server.url();

    // Sink: the second of three messages is larger than the broker's max_message_size.
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    let mut big = order(1);
    big.note = Some("x".repeat(4000));
    for o in [order(0), big, order(2)] {
        q.enqueue(&o).unwrap();
    }
    let dead = dir.path().join("orders.dead");
    let running = spawn(base(
        "rabbit-out",
        &queue,
        Some(&dead),
        ConnectorKind::RabbitmqSink(sink_cfg(&url)),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the sink's batch", 60, || {
        let s = s.snapshot();
        s.forwarded == 2 && s.dead_letters == 1 && s.lag == 0
    })
    .await;
    running.stop().await.unwrap();
    let mut got: Vec<u64> = drain(&url, "out.orders")
        .await
        .iter()
        .map(|(_, o)| o.id)
        .collect();
    // The broker closes the channel at the large message, before confirming the one ahead of
    // it: that one is published again (a duplicate within the documented window).
    let sent = got.len();
    got.dedup();
    assert_eq!(got, vec![0, 2], "{sent} messages received");
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letter = dq.dequeue().unwrap().unwrap();
    assert_eq!(letter.seq, Some(1));
    assert!(letter.reason.contains("message size"), "{}", letter.reason);
    assert!(dq.dequeue().unwrap().is_none());
    println!(
        "rabbitmq sink: 3 messages, 2 confirmed, 1 dead-lettered: {}",
        letter.reason
    );

    // Source: one of three does not fit the queue's type.
    publish(
        &url,
        "in.orders",
        [
            serde_json::to_vec(&order(1)).unwrap(),
            br#"{"id": 2}"#.to_vec(),
            serde_json::to_vec(&order(3)).unwrap(),
        ],
    )
    .await;
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 20).unwrap());
    let dead = dir.path().join("inbox.dead");
    let running = spawn(base(
        "rabbit-in",
        &inbox,
        Some(&dead),
        ConnectorKind::RabbitmqSource(source_cfg(&url)),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the source's batch", 60, || {
        let s = s.snapshot();
        s.forwarded == 2 && s.dead_letters == 1
    })
    .await;
    running.stop().await.unwrap();
    let mut reader = QueueOptions::new()
        .consumer("check")
        .open::<Order>(&inbox)
        .unwrap();
    let got: Vec<Order> = std::iter::from_fn(|| reader.dequeue().unwrap()).collect();
    assert_eq!(got, vec![order(1), order(3)]);
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letter = dq.dequeue().unwrap().unwrap();
    assert_eq!(letter.remote_id.as_deref(), Some("m-1"), "the message-id");
    assert!(
        letter.reason.contains("missing field \"item\""),
        "{}",
        letter.reason
    );
    println!(
        "rabbitmq source: 3 messages, 2 enqueued, 1 dead-lettered: {}",
        letter.reason
    );
}
