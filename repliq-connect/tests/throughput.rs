//! Throughput of each connector next to the remote's own client doing the same work directly,
//! on the same server in the same run (the ratio is what the bridge costs). A measurement, not a
//! gate: ignored (with the reason on each test), run with
//! `cargo test --release -p repliq-connect --test throughput -- --ignored --nocapture`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use repliq::JournalQueue;
use repliq_connect::{
    ConnectorConfig, ConnectorKind, Format, NatsSinkConfig, NatsSourceConfig, RedisSinkConfig,
    RedisSourceConfig, RetryConfig, spawn,
};
use support::{Order, free_port, order};

const N: u64 = 100_000;

fn base(name: &str, queue: &Path, kind: ConnectorKind) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        queue: queue.into(),
        format: Format::Json,
        dead_letter: None,
        batch: 256,
        retry: RetryConfig::default(),
        kind,
        unknown: Default::default(),
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cmd: &mut Command, port: u16) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

fn filled_queue(path: &Path) {
    filled_queue_of(path, N);
}

fn filled_queue_of(path: &Path, n: u64) {
    let mut q = JournalQueue::<Order>::new(path, 1 << 21).unwrap();
    for i in 0..n {
        q.enqueue(&order(i)).unwrap();
    }
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done() {
        assert!(Instant::now() < deadline, "no progress within 300 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn report(what: &str, bridge: f64, direct: f64) {
    println!(
        "{what}: connector {:.0} msg/s, direct client {:.0} msg/s, ratio {:.2}",
        bridge,
        direct,
        bridge / direct
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (needs redis-server)"]
async fn redis_throughput_next_to_the_direct_client() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"]),
        port,
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let bodies: Vec<Vec<u8>> = (0..N)
        .map(|i| serde_json::to_vec(&order(i)).unwrap())
        .collect();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    // Sink: the queue to a stream, against pipelined XADDs of the same bodies.
    let queue = dir.path().join("orders");
    filled_queue(&queue);
    let t = Instant::now();
    let running = spawn(base(
        "sink",
        &queue,
        ConnectorKind::RedisSink(RedisSinkConfig {
            url: url.clone(),
            stream: "bridge".into(),
            field: "data".into(),
            dedup: true,
            maxlen: None,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    for (c, chunk) in bodies.chunks(256).enumerate() {
        let mut pipe = redis::pipe();
        for (i, b) in chunk.iter().enumerate() {
            pipe.cmd("XADD")
                .arg("direct")
                .arg(format!("{}-1", c * 256 + i))
                .arg("data")
                .arg(&b[..]);
        }
        let _: Vec<redis::Value> = pipe.query_async(&mut conn).await.unwrap();
    }
    report("redis sink", bridge, rate(N, t.elapsed()));

    // Source: a stream into a queue, against XREADGROUP + XACK without the enqueue.
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 21).unwrap());
    let t = Instant::now();
    let running = spawn(base(
        "source",
        &inbox,
        ConnectorKind::RedisSource(RedisSourceConfig {
            url: url.clone(),
            stream: "direct".into(),
            group: "bridge".into(),
            consumer: None,
            field: "data".into(),
            block_ms: 100,
            claim_idle_ms: 30_000,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("direct")
        .arg("direct")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let t = Instant::now();
    let mut got = 0;
    while got < N {
        let r: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("direct")
            .arg("c")
            .arg("COUNT")
            .arg(256)
            .arg("STREAMS")
            .arg("direct")
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
        let ids: Vec<String> = r
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|e| e.id)
            .collect();
        got += ids.len() as u64;
        let mut ack = redis::cmd("XACK");
        ack.arg("direct").arg("direct").arg(&ids);
        let _: redis::Value = ack.query_async(&mut conn).await.unwrap();
    }
    report("redis source", bridge, rate(N, t.elapsed()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (needs nats-server)"]
async fn nats_throughput_next_to_the_direct_client() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("nats")),
        port,
    );
    let url = format!("nats://127.0.0.1:{port}");
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    for (name, subject) in [("BRIDGE", "bridge"), ("DIRECT", "direct")] {
        js.get_or_create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let bodies: Vec<Vec<u8>> = (0..N)
        .map(|i| serde_json::to_vec(&order(i)).unwrap())
        .collect();

    let queue = dir.path().join("orders");
    filled_queue(&queue);
    let t = Instant::now();
    let running = spawn(base(
        "sink",
        &queue,
        ConnectorKind::NatsSink(NatsSinkConfig {
            url: url.clone(),
            subject: "bridge".into(),
            stream: None,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    for (c, chunk) in bodies.chunks(256).enumerate() {
        let mut acks = Vec::new();
        for (i, b) in chunk.iter().enumerate() {
            let m = jetstream::message::PublishMessage::build()
                .payload(b.clone().into())
                .message_id(format!("direct-{}", c * 256 + i));
            acks.push(js.send_publish("direct", m).await.unwrap());
        }
        for a in acks {
            a.await.unwrap();
        }
    }
    report("nats sink", bridge, rate(N, t.elapsed()));

    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 21).unwrap());
    let t = Instant::now();
    let running = spawn(base(
        "source",
        &inbox,
        ConnectorKind::NatsSource(NatsSourceConfig {
            url: url.clone(),
            stream: "DIRECT".into(),
            consumer: "bridge".into(),
            ack_wait_ms: 30_000,
            fetch_ms: 100,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let c: consumer::PullConsumer = js
        .get_stream("DIRECT")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("direct".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let t = Instant::now();
    let mut got = 0;
    while got < N {
        let mut batch = c
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(100))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            m.unwrap().ack().await.unwrap();
            got += 1;
        }
    }
    report("nats source", bridge, rate(N, t.elapsed()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (needs rabbitmq-server)"]
async fn rabbitmq_throughput_next_to_the_direct_client() {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    use repliq_connect::{RabbitMqSinkConfig, RabbitMqSourceConfig};

    let dir = tempfile::tempdir().unwrap();
    let server = support::RabbitMq::start(&dir.path().join("rabbitmq"), "");
    let url = server.url();
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for q in ["bridge", "direct"] {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let bodies: Vec<Vec<u8>> = (0..N)
        .map(|i| serde_json::to_vec(&order(i)).unwrap())
        .collect();

    // Sink: persistent, confirmed publishes in batches of 256, both ways.
    let queue = dir.path().join("orders");
    filled_queue(&queue);
    let t = Instant::now();
    let running = spawn(base(
        "sink",
        &queue,
        ConnectorKind::RabbitmqSink(RabbitMqSinkConfig {
            url: url.clone(),
            exchange: String::new(),
            routing_key: "bridge".into(),
            declare_queue: None,
            queue_type: None,
            confirm_timeout_ms: 30_000,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    for (c, chunk) in bodies.chunks(256).enumerate() {
        let mut confirms = Vec::new();
        for (i, b) in chunk.iter().enumerate() {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    "direct".into(),
                    BasicPublishOptions::default(),
                    b,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(format!("direct-{}", c * 256 + i).into()),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    }
    report("rabbitmq sink", bridge, rate(N, t.elapsed()));

    // Source: the "direct" queue into a repliq queue, against a consumer (prefetch 512)
    // acknowledging every 256 deliveries of the "bridge" queue, without the enqueue.
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 21).unwrap());
    let t = Instant::now();
    let running = spawn(base(
        "source",
        &inbox,
        ConnectorKind::RabbitmqSource(RabbitMqSourceConfig {
            url: url.clone(),
            queue: "direct".into(),
            declare: false,
            queue_type: None,
            fetch_ms: 100,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    let rx = conn.create_channel().await.unwrap();
    rx.basic_qos(512, BasicQosOptions::default()).await.unwrap();
    let mut consumer = rx
        .basic_consume(
            "bridge".into(),
            "direct".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = 0;
    while got < N {
        let d = consumer.next().await.unwrap().unwrap();
        got += 1;
        if got % 256 == 0 || got == N {
            rx.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
    }
    report("rabbitmq source", bridge, rate(N, t.elapsed()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (needs influxd)"]
async fn influxdb_throughput_next_to_the_direct_client() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use repliq_connect::{InfluxDbSinkConfig, Precision};
    use support::{Reading, reading};

    let dir = tempfile::tempdir().unwrap();
    let server = support::Influx::start(&dir.path().join("influx"));
    let url = server.url();
    let cfg = |db: &str| InfluxDbSinkConfig {
        url: url.clone(),
        database: db.into(),
        retention_policy: None,
        token: None,
        create_database: true,
        measurement: "readings".into(),
        tags: [("sensor".into(), "sensor".into())].into(),
        fields: [
            ("value".into(), "value".into()),
            ("id".into(), "id".into()),
            ("unit".into(), "unit".into()),
        ]
        .into(),
        time: "at_ns".into(),
        precision: Precision::Ns,
        timeout_ms: 10_000,
    };
    let queue = dir.path().join("readings");
    let mut q = JournalQueue::<Reading>::new(&queue, 1 << 21).unwrap();
    for i in 0..N {
        q.enqueue(&reading(i)).unwrap();
    }
    let t = Instant::now();
    let running = spawn(base(
        "sink",
        &queue,
        ConnectorKind::InfluxdbSink(cfg("bridge")),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= N).await;
    let bridge = rate(N, t.elapsed());
    running.stop().await.unwrap();

    // Direct: the same points as line protocol, 256 a request, over one kept-alive connection.
    assert!(
        support::http(
            server.port,
            "POST",
            "/query?q=CREATE%20DATABASE%20direct",
            ""
        )
        .contains(" 200 ")
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let lines: Vec<String> = (0..N)
        .map(|i| {
            let r = reading(i);
            let unit = r
                .unit
                .map_or_else(String::new, |u| format!(",unit=\"{u}\""));
            format!(
                "readings,sensor={} id={}i{unit},value={}i {}\n",
                r.sensor, r.id, r.value, r.at_ns
            )
        })
        .collect();
    let uri: hyper::Uri = format!("{url}/write?db=direct&precision=ns")
        .parse()
        .unwrap();
    let t = Instant::now();
    for chunk in lines.chunks(256) {
        let req = hyper::Request::post(uri.clone())
            .body(Full::new(bytes::Bytes::from(chunk.concat())))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 204);
        resp.into_body().collect().await.unwrap();
    }
    report("influxdb sink", bridge, rate(N, t.elapsed()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture (needs tansu: .ci/install-kafka.sh)"]
async fn kafka_throughput_next_to_the_direct_client() {
    use repliq_connect::{KafkaOutOfRange, KafkaSinkConfig, KafkaSourceConfig, KafkaStart};
    use rskafka::chrono::{DateTime, Utc};
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;

    // tansu is a debug build keeping records in SQLite: a few thousand records a second
    // produced, about a hundred fetched, so a fiftieth of the other rows' count. The broker
    // bounds both sides here: the ratio says little about the bridge's own cost.
    const K: u64 = N / 50;
    let dir = tempfile::tempdir().unwrap();
    let server = support::Tansu::start(&dir.path().join("tansu"), &[]);
    let broker = server.broker();
    let client = ClientBuilder::new(vec![broker.clone()])
        .build()
        .await
        .expect("connects to tansu");
    for topic in ["bridge", "direct"] {
        client
            .controller_client()
            .unwrap()
            .create_topic(topic, 1, 1, 5000)
            .await
            .unwrap();
    }
    let direct = client
        .partition_client("direct", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records: Vec<Record> = (0..K)
        .map(|i| Record {
            key: Some(format!("direct-{i}").into_bytes()),
            value: Some(serde_json::to_vec(&order(i)).unwrap()),
            headers: [("repliq-seq".to_owned(), i.to_string().into_bytes())].into(),
            timestamp: DateTime::<Utc>::from_timestamp_millis(1_735_689_600_000).unwrap(),
        })
        .collect();

    // Sink: the queue to a topic, against produce requests of 256 records with the same keys
    // and header (acks = all, as the sink asks).
    let queue = dir.path().join("orders");
    filled_queue_of(&queue, K);
    let t = Instant::now();
    let running = spawn(base(
        "sink",
        &queue,
        ConnectorKind::KafkaSink(KafkaSinkConfig {
            brokers: vec![broker.clone()],
            topic: "bridge".into(),
            partition: 0,
            timeout_ms: 10_000,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= K).await;
    let bridge = rate(K, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    for chunk in records.chunks(256) {
        direct
            .produce(chunk.to_vec(), Compression::NoCompression)
            .await
            .unwrap();
    }
    report("kafka sink", bridge, rate(K, t.elapsed()));

    // Source: the "direct" topic into a queue, against fetches of the same size (64 KiB, some
    // 600 records: tansu answers a fetch of a megabyte only after seconds) without the enqueue.
    let inbox = dir.path().join("inbox");
    drop(JournalQueue::<Order>::new(&inbox, 1 << 21).unwrap());
    let t = Instant::now();
    let running = spawn(base(
        "source",
        &inbox,
        ConnectorKind::KafkaSource(KafkaSourceConfig {
            brokers: vec![broker.clone()],
            topic: "direct".into(),
            partition: 0,
            start: KafkaStart::Earliest,
            fetch_max_bytes: 64 << 10,
            fetch_ms: 100,
            on_out_of_range: KafkaOutOfRange::Error,
            timeout_ms: 10_000,
        }),
    ))
    .unwrap();
    let s = running.stats().clone();
    wait_for(|| s.snapshot().forwarded >= K).await;
    let bridge = rate(K, t.elapsed());
    running.stop().await.unwrap();
    let t = Instant::now();
    let mut next = 0i64;
    while next < K as i64 {
        let (got, _) = direct
            .fetch_records(next, 1..(64 << 10), 100)
            .await
            .unwrap();
        let from = next;
        for r in got.into_iter().filter(|r| r.offset >= from).take(256) {
            next = r.offset + 1;
        }
    }
    report("kafka source", bridge, rate(K, t.elapsed()));
}
