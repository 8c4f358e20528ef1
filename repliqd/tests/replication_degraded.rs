//! Degraded replication: with fewer replicas up than `required_acks`, a synchronous `enqueue`
//! fails with `AckTimeout` after `replication.ack_timeout_ms`, `/readyz` answers 503 with the
//! reason and the metrics show it; the lag keeps growing while a replica is stopped (and its
//! age in seconds is not 0); an unresolvable peer is reported in `/readyz` and the metrics.

mod support;

use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueError, ReplicationError};
use support::{Daemon, Order, free_port, http_get, metric, order, wait_until};

fn signal(d: &Daemon, sig: i32) {
    let pid = d.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    if sig == libc::SIGSTOP {
        // kill(2) returns before the stop takes effect: a thread of the daemon still running on
        // the other core could acknowledge one more record. Wait until every thread is stopped.
        wait_until("every thread of the daemon to stop", || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .all(|task| {
                    let stat = std::fs::read_to_string(task.unwrap().path().join("stat"))
                        .unwrap_or_default();
                    // The state follows the parenthesised command name.
                    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
                    matches!(state, Some("T" | "t"))
                })
        });
    }
}

fn metrics(a: &Daemon) -> String {
    http_get(a.http(), "/metrics").1
}

fn lag(body: &str, what: &str) -> f64 {
    metric(
        body,
        &format!(r#"repliq_replication_lag_{what}{{queue="orders",replica="b"}}"#),
    )
    .unwrap_or(-1.0)
}

fn expect_timeout(q: &mut JournalQueue<Order>, id: u64) {
    let started = Instant::now();
    match q.enqueue(&order(id)) {
        Err(QueueError::Replication(ReplicationError::AckTimeout { timeout, .. })) => {
            assert_eq!(timeout, Duration::from_millis(300));
            // A lower bound (the configured timeout is honoured), not a speed goal.
            assert!(started.elapsed() >= Duration::from_millis(300));
        }
        other => panic!("expected AckTimeout, got {other:?}"),
    }
}

#[test]
fn too_few_replicas_time_out_enqueues_and_show_in_readyz_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Daemon::new(dir.path(), "b", "synchronous", &[], free_port());
    let mut a = Daemon::new(
        dir.path(),
        "a",
        "synchronous",
        &[("b", b.grpc_port), ("c", 9)],
        free_port(),
    );
    let text = std::fs::read_to_string(&a.config).unwrap();
    let text = text
        .replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 1\n  ack_timeout_ms: 300\n",
        )
        .replace("127.0.0.1:9\n", "c.invalid:31337\n");
    std::fs::write(&a.config, text).unwrap();
    std::fs::write(
        &b.config,
        std::fs::read_to_string(&b.config).unwrap().replace(
            "peers: []",
            "peers:\n      - name: a\n        address: 127.0.0.1:9",
        ),
    )
    .unwrap();
    b.start();
    a.start();

    let mut q = JournalQueue::<Order>::new(a.root.join("orders"), 1_000_000).unwrap();
    for id in 0..10 {
        q.enqueue(&order(id)).unwrap_or_else(|e| panic!("{e}"));
    }
    // 1 of 1 required replicas up: ready, but the unresolvable peer is reported.
    wait_until("/readyz to report c", || {
        let (status, body) = http_get(a.http(), "/readyz");
        status == 200 && body.contains("c (") && body.contains("c.invalid")
    });
    let body = metrics(&a);
    let up = |body: &str, r: &str| {
        metric(
            body,
            &format!(r#"repliq_replication_replica_up{{queue="orders",replica="{r}"}}"#),
        )
    };
    assert_eq!(up(&body, "b"), Some(1.0), "{body}");
    assert_eq!(up(&body, "c"), Some(0.0));
    assert_eq!(
        metric(&body, r#"repliq_replication_degraded{queue="orders"}"#),
        Some(0.0)
    );

    // b stops (SIGSTOP: its connection stays open, it just never answers).
    signal(&b, libc::SIGSTOP);
    for id in 10..13 {
        expect_timeout(&mut q, id);
    }
    wait_until("/readyz to say the queue is degraded", || {
        let (status, body) = http_get(a.http(), "/readyz");
        status == 503 && body.contains("degraded: queue orders: 0 of 1 required replicas up")
    });
    let body = metrics(&a);
    assert_eq!(
        metric(&body, r#"repliq_replication_degraded{queue="orders"}"#),
        Some(1.0)
    );
    assert_eq!(up(&body, "b"), Some(0.0));
    wait_until("the lag to count the unacknowledged records", || {
        lag(&metrics(&a), "records") >= 3.0
    });
    let before = lag(&metrics(&a), "records");
    for id in 13..16 {
        expect_timeout(&mut q, id);
    }
    wait_until("the lag to keep growing while b is stopped", || {
        lag(&metrics(&a), "records") >= before + 3.0
    });
    let age = lag(&metrics(&a), "seconds");
    assert!(age >= 0.9, "lag of {} records reads {age} s", before + 3.0);

    // b continues: it catches up, the queue is ready again, enqueues are acknowledged.
    signal(&b, libc::SIGCONT);
    wait_until("b to catch up", || {
        lag(&metrics(&a), "records") == 0.0 && http_get(a.http(), "/readyz").0 == 200
    });
    q.enqueue(&order(16)).unwrap_or_else(|e| panic!("{e}"));

    // b dies: timeouts again, the lag grows, /readyz names the connection error.
    b.kill9();
    expect_timeout(&mut q, 17);
    wait_until("/readyz to name b's connection error", || {
        let (status, body) = http_get(a.http(), "/readyz");
        status == 503 && body.contains("b (")
    });
    expect_timeout(&mut q, 18);
    wait_until("the lag to grow while b is dead", || {
        lag(&metrics(&a), "records") >= 2.0
    });
}
