//! The node's own events reach Slack through the ordinary Slack sink: two daemons replicate a
//! queue; the primary writes its events (`events:`) into its local events queue and its
//! `connectors:` forward them to a webhook server in this test. The replica's daemon is killed:
//! exactly one `replica_lost` naming it; restarted: one `replica_back`. Then it is stopped
//! (SIGSTOP) while the producer writes: `lag_above`; continued: `lag_below`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use repliq::{JournalQueue, QueueOptions};
use repliqd::node_events::NodeEvent;
use support::{Daemon, Order, held, http_get, metric, order, signal, wait_until};

/// A Slack incoming webhook on loopback: answers `200 ok` to every POST and keeps the `text` of
/// each payload.
fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/T0/B0/x", listener.local_addr().unwrap());
    let texts = Arc::new(Mutex::new(Vec::new()));
    let kept = texts.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(sock);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_ascii_lowercase();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let text = payload["text"].as_str().expect("a text").to_owned();
                    kept.lock().unwrap().push(text);
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if r.get_mut().write_all(ok.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, texts)
}

fn posted(texts: &Mutex<Vec<String>>, prefix: &str) -> Vec<String> {
    texts
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.starts_with(prefix))
        .cloned()
        .collect()
}

/// Every event in the primary's events queue.
fn events(a: &Daemon) -> Vec<NodeEvent> {
    let mut q = QueueOptions::new()
        .consumer("test")
        .open::<NodeEvent>(a.root.join(".node/events"))
        .unwrap();
    let mut out = Vec::new();
    while let Some(e) = q.dequeue().unwrap() {
        out.push(e);
    }
    // The next call reads from the start again.
    q.remove_consumer("test");
    out
}

fn count(events: &[NodeEvent], kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e.kind == kind && e.queue == "orders" && e.peer.as_deref() == Some("b"))
        .count()
}

#[test]
fn replica_lost_back_and_lag_reach_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (url, texts) = webhook();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "asynchronous");
    let mut b = nodes.pop().unwrap();
    let mut a = nodes.pop().unwrap();
    let mut config = std::fs::read_to_string(&a.config).unwrap();
    config.push_str(&format!(
        "events:\n  queue: .node/events\n  interval_ms: 100\n  lag_bound_records: 500\n\
         connectors:\n  - name: node-alerts\n    queue: .node/events\n    batch: 1\n    \
         slack_sink:\n      webhook_url: {url}\n      rules:\n\
         \x20       - {{ when: {{ field: kind, equals: replica_lost }}, text: \"LOST {{peer}}: {{message}}\" }}\n\
         \x20       - {{ when: {{ field: kind, equals: replica_back }}, text: \"BACK {{peer}}: {{message}}\" }}\n\
         \x20       - {{ when: {{ field: kind, equals: lag_above }}, text: \"LAG {{peer}} {{value}}/{{bound}}: {{message}}\" }}\n\
         \x20       - {{ when: {{ field: kind, equals: lag_below }}, text: \"CAUGHT UP {{peer}}: {{message}}\" }}\n"
    ));
    std::fs::write(&a.config, config).unwrap();

    let mut producer = JournalQueue::<Order>::new(a.root.join("orders"), 1_000_000).unwrap();
    for id in 0..100 {
        producer.enqueue(&order(id)).unwrap();
    }
    b.start();
    a.start();
    wait_until("b holds the first 100 orders", || {
        held(&b.root.join("orders")) == 100
    });

    // Give the looks (every 100 ms) time to see b up, so its loss is an edge (a replica never
    // seen up is reported too, 10 s after the replication started, with another text).
    wait_until("a reports b up", || {
        metric(
            &http_get(a.http(), "/metrics").1,
            r#"repliq_replication_replica_up{queue="orders",replica="b"}"#,
        ) == Some(1.0)
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    // Lost: killed at any instruction.
    b.kill9();
    wait_until("the webhook got replica_lost", || {
        !posted(&texts, "LOST").is_empty()
    });
    let lost = posted(&texts, "LOST");
    assert!(
        lost[0].starts_with("LOST b: a: replica b of queue orders is lost ("),
        "{lost:?}"
    );
    b.start();
    wait_until("the webhook got replica_back", || {
        !posted(&texts, "BACK").is_empty()
    });
    let back = posted(&texts, "BACK");
    assert!(
        back[0].starts_with("BACK b: a: replica b of queue orders is back"),
        "{back:?}"
    );
    // Edge-only: one event per change, however many looks (100 ms apart) saw b down.
    let seen = events(&a);
    assert_eq!(count(&seen, "replica_lost"), 1, "{seen:?}");
    assert_eq!(count(&seen, "replica_back"), 1, "{seen:?}");
    assert_eq!(posted(&texts, "LOST").len(), 1);
    assert_eq!(posted(&texts, "BACK").len(), 1);
    let n = texts.lock().unwrap().len();
    println!("loss and return: {} events, {n} posts", seen.len());

    // Lag: b stopped (its connection stays open) while 2000 more orders are written.
    signal(&b, libc::SIGSTOP);
    for id in 100..2100 {
        producer.enqueue(&order(id)).unwrap();
    }
    wait_until("the webhook got lag_above", || {
        !posted(&texts, "LAG").is_empty()
    });
    let lag = posted(&texts, "LAG");
    assert!(lag[0].starts_with("LAG b "), "{lag:?}");
    assert!(
        lag[0].contains("/500: a: replica b of queue orders lags"),
        "{lag:?}"
    );
    signal(&b, libc::SIGCONT);
    wait_until("b holds all 2100 orders", || {
        held(&b.root.join("orders")) == 2100
    });
    wait_until("the webhook got lag_below", || {
        !posted(&texts, "CAUGHT UP").is_empty()
    });
    // A stop longer than the acknowledgement timeout also counts as a loss: its return may be
    // seen a look after the lag went down.
    let mut seen = events(&a);
    wait_until("as many replica_back as replica_lost", || {
        seen = events(&a);
        count(&seen, "replica_lost") == count(&seen, "replica_back")
    });
    assert_eq!(count(&seen, "lag_above"), 1, "{seen:?}");
    assert_eq!(count(&seen, "lag_below"), 1, "{seen:?}");
    let above = seen.iter().find(|e| e.kind == "lag_above").unwrap();
    assert_eq!(above.bound, Some(500));
    assert!(above.value.unwrap() > 500, "{above:?}");
    let all = texts.lock().unwrap().clone();
    println!(
        "with the lag: {} events, {} posts: {all:#?}",
        seen.len(),
        all.len()
    );
}
