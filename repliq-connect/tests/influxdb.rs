//! The InfluxDB sink against a real `influxd` 1.x on loopback (its own ports and directories,
//! WAL synced on every write): killed at exact crash points and as a task mid-stream, with the
//! server killed (`kill -9`) and restarted under it. Every message is a point, none is lost,
//! and resends leave no duplicates (a point is keyed by measurement, tags and time). Dead
//! letters: a point InfluxDB refuses (a field type conflict).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions};
use repliq_connect::{
    ConnectorConfig, ConnectorKind, DeadLetter, Format, InfluxDbSink, InfluxDbSinkConfig,
    Precision, RetryConfig, Stats, spawn,
};
use support::{At, Influx, Reading, T0, http, reading};

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

fn influx_cfg(url: &str) -> InfluxDbSinkConfig {
    InfluxDbSinkConfig {
        url: url.into(),
        database: "test".into(),
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
        timeout_ms: 5000,
    }
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every point of `readings`: (time, sensor, id, value, unit).
fn points(server: &Influx) -> Vec<(i64, String, u64, i64, Option<String>)> {
    let v = server.query(
        "test",
        "SELECT%20sensor%2Cid%2Cvalue%2Cunit%20FROM%20readings",
    );
    let Some(series) = v["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in series {
        for row in s["values"].as_array().unwrap() {
            // The dead-letter test's conflicting point has no id.
            if row[2].is_null() {
                continue;
            }
            out.push((
                row[0].as_i64().unwrap(),
                row[1].as_str().unwrap().to_owned(),
                row[2].as_u64().unwrap(),
                row[3].as_i64().unwrap(),
                row[4].as_str().map(str::to_owned),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_sink_loses_nothing_and_duplicates_nothing_across_crashes_and_server_kills() {
    const M: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Influx::start(&dir.path().join("influx"));
    let url = server.url();
    let queue = dir.path().join("readings");
    let mut q = JournalQueue::<Reading>::new(&queue, 1 << 20).unwrap();
    for i in 0..M {
        q.enqueue(&reading(i)).unwrap();
    }
    let cfg = base(
        "to-influx",
        &queue,
        None,
        ConnectorKind::InfluxdbSink(influx_cfg(&url)),
    );
    let stats = Arc::new(Stats::default());
    let mut crashes = support::crash_sink_at(
        "influxdb sink",
        &cfg,
        &stats,
        &[(At::Before, 2), (At::After, 2), (At::After, 3)],
        || InfluxDbSink::new("to-influx", influx_cfg(&url)).unwrap(),
    )
    .await;
    // The server dies under the running sink and comes back; then the sink dies mid-stream.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    until("sink progress", 30, || s.snapshot().forwarded >= 512).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    until("sink progress", 60, || s.snapshot().forwarded >= 1500).await;
    let retries = s.snapshot().retries;
    running.kill().await;
    crashes += 1;
    let running = spawn(cfg.clone()).unwrap();
    let s2 = running.stats().clone();
    // Done when InfluxDB holds M points (a lost one times this out), polled every 10 ms.
    until("M points", 60, || points(&server).len() as u64 >= M).await;
    until("the cursor at the end", 30, || s2.snapshot().lag == 0).await;
    running.stop().await.unwrap();

    let got = points(&server);
    let mut seen = vec![0u32; M as usize];
    for (t, sensor, id, value, unit) in &got {
        let r = reading(*id);
        assert_eq!(
            (*t, sensor, *value, unit),
            (r.at_ns, &r.sensor, r.value, &r.unit),
            "point {id}"
        );
        seen[*id as usize] += 1;
    }
    let lost = seen.iter().filter(|&&n| n == 0).count();
    let dups: u32 = seen.iter().map(|&n| n.saturating_sub(1)).sum();
    let sent_total = stats.snapshot().forwarded + s.snapshot().forwarded + s2.snapshot().forwarded;
    println!(
        "influxdb sink: sent {M}, received {} points, lost {lost}, duplicated {dups} (connector \
         killed {crashes}x, server killed 1x, {retries} retries; {} confirmed across the runs, \
         every resent batch replaced its own points)",
        got.len(),
        sent_total
    );
    assert_eq!((got.len() as u64, lost, dups), (M, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_sink_dead_letters_a_point_influxdb_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Influx::start(&dir.path().join("influx"));
    let url = server.url();
    // A string `value` in another shard (2026): an integer there is a field type conflict.
    let t_conflict = T0 + 365 * 86_400 * 1_000_000_000;
    assert!(http(server.port, "POST", "/query?q=CREATE%20DATABASE%20test", "").contains(" 200 "));
    let w = http(
        server.port,
        "POST",
        "/write?db=test",
        &format!("readings,sensor=s9 value=\"text\" {t_conflict}"),
    );
    assert!(w.starts_with("HTTP/1.0 204"), "{w}");
    let queue = dir.path().join("readings");
    let mut q = JournalQueue::<Reading>::new(&queue, 1 << 20).unwrap();
    let mut bad = reading(2);
    bad.at_ns = t_conflict + 1_000_000_000;
    for r in [reading(0), reading(1), bad, reading(3)] {
        q.enqueue(&r).unwrap();
    }
    let dead = dir.path().join("readings.dead");
    let running = spawn(base(
        "influx-dl",
        &queue,
        Some(&dead),
        ConnectorKind::InfluxdbSink(influx_cfg(&url)),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the batch", 30, || {
        let s = s.snapshot();
        s.lag == 0 && s.dead_letters == 1 && s.forwarded == 3
    })
    .await;
    running.stop().await.unwrap();
    let ids: Vec<u64> = points(&server).iter().map(|p| p.2).collect();
    assert_eq!(ids, vec![0, 1, 3]);
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letter = dq.dequeue().unwrap().unwrap();
    assert_eq!(letter.seq, Some(2));
    assert!(
        letter.reason.contains("field type conflict"),
        "{}",
        letter.reason
    );
    assert!(dq.dequeue().unwrap().is_none());
    println!(
        "influxdb sink: 4 messages, 3 points written, 1 dead-lettered: {}",
        letter.reason
    );
}
