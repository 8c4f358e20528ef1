//! Redelivery for remote pull consumers (`repliq.client.v1` Consume) against a real `repliqd`:
//! a negatively acknowledged record is delivered again; a record not acknowledged within
//! `ack_wait` is delivered again with delivery count 2, and again to the next stream of the
//! name; a record negatively acknowledged `max_deliver` times lands in the dead-letter queue
//! (exactly that record, counted in the metric) and the durable cursor passes it; a SIGKILL of
//! the daemon with records in flight (acknowledged out of order, one dead-lettered ahead of the
//! cursor) loses nothing. Every check reads the queue's durable cursor and the dead-letter
//! queue's records from the files.

mod support;

use std::path::Path;
use std::time::Duration;

use repliq::client::{ConsumerOptions, Delivery, RemoteConsumer};
use repliq::dead_letter::DeadLetter;
use support::{Daemon, Order, order, wait_until};

#[repliq::message(name = "test.NotAnOrder")]
#[derive(Debug, Clone, PartialEq)]
struct NotAnOrder {
    text: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One node serving clients, with queue `orders` holding records `0..n`.
fn node(dir: &Path, n: u64) -> Daemon {
    support::serving_clients(dir, n)
}

fn addr(d: &Daemon) -> String {
    format!("127.0.0.1:{}", d.grpc_port)
}

/// The durable cursor of consumer `name` of the queue at `dir`, from the meta file.
fn cursor(dir: &Path, name: &str) -> u64 {
    repliq::inspect(dir)
        .unwrap()
        .cursors
        .iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.next_seq)
}

/// Every letter of the dead-letter queue at `dir`.
fn letters(dir: &Path) -> Vec<DeadLetter> {
    let mut t = repliq::Tailer::<DeadLetter>::open(dir, repliq::StartAt::Earliest).unwrap();
    let mut out = Vec::new();
    while let Some(l) = t.try_next().unwrap() {
        out.push(l);
    }
    out
}

/// The next delivery within 20 s (a bound, not a speed goal).
async fn next(c: &mut RemoteConsumer<Order>) -> Delivery<Order> {
    let d = c
        .next_timeout(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("a delivery within 20 s");
    assert_eq!(d.message, order(d.seq), "the record's bytes");
    d
}

#[test]
fn a_nacked_record_is_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), 5);
    let q = a.root.join("orders");
    runtime().block_on(async {
        // ack_wait of an hour: only the nack can bring a record back during the test.
        let options = ConsumerOptions::default().ack_wait(Duration::from_secs(3600));
        let mut c = RemoteConsumer::<Order>::connect_with(&addr(&a), "orders", "nacker", options)
            .await
            .unwrap();
        assert_eq!(c.settings().ack_wait, Duration::from_secs(3600));
        assert_eq!(c.settings().max_deliver, 10, "the default");
        assert_eq!(c.settings().dead_letter_queue, "orders.dlq", "the default");
        for want in 0..5 {
            let d = next(&mut c).await;
            assert_eq!((d.seq, d.delivery_count), (want, 1));
        }
        // A client of another type using the name is refused without ending this stream.
        let err = RemoteConsumer::<NotAnOrder>::connect(&addr(&a), "orders", "nacker")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.refused(),
                Some(repliq::client::Refused::WrongType { .. })
            ),
            "{err}"
        );
        c.nack(1, Duration::ZERO).await.unwrap();
        c.nack(3, Duration::from_secs(3600)).await.unwrap();
        // Out of order: the cursor stops at the first record not acknowledged.
        assert_eq!(c.ack_each(&[4, 2, 0]).await.unwrap(), 1);
        assert_eq!(cursor(&q, "nacker"), 1);
        let d = next(&mut c).await;
        assert_eq!((d.seq, d.delivery_count), (1, 2), "record 1 again");
        // Record 3 waits for its hour: nothing else comes meanwhile.
        assert!(
            c.next_timeout(Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(c.ack(1).await.unwrap(), 3);
        // A cumulative acknowledgement covers the record waiting for its redelivery.
        assert_eq!(c.ack(3).await.unwrap(), 5);
    });
    assert_eq!(cursor(&q, "nacker"), 5);
    assert!(!a.root.join("orders.dlq").exists(), "nothing dead-lettered");
}

#[test]
fn a_record_not_acked_within_ack_wait_is_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), 5);
    let q = a.root.join("orders");
    let options = || ConsumerOptions::default().ack_wait(Duration::from_millis(500));
    runtime().block_on(async {
        let mut c = RemoteConsumer::<Order>::connect_with(&addr(&a), "orders", "slow", options())
            .await
            .unwrap();
        for want in 0..5 {
            let d = next(&mut c).await;
            assert_eq!((d.seq, d.delivery_count), (want, 1));
            if d.seq != 2 {
                c.ack_each(&[d.seq]).await.unwrap();
            }
        }
        assert_eq!(cursor(&q, "slow"), 2);
        let d = next(&mut c).await;
        assert_eq!(
            (d.seq, d.delivery_count),
            (2, 2),
            "record 2 again after ack_wait"
        );
        // Not acknowledged again, and the stream ends: the next stream of the name gets it.
        drop(c);
        // A client of the wrong type is refused and leaves the consumer's state alone.
        let err = RemoteConsumer::<NotAnOrder>::connect(&addr(&a), "orders", "slow")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.refused(),
                Some(repliq::client::Refused::WrongType { .. })
            ),
            "{err}"
        );
        let mut c = RemoteConsumer::<Order>::connect_with(&addr(&a), "orders", "slow", options())
            .await
            .unwrap();
        assert_eq!(c.cursor(), 2);
        let d = next(&mut c).await;
        assert!(
            d.seq == 2 && d.delivery_count >= 3,
            "record 2 again on the next stream: {d:?}"
        );
        assert_eq!(c.ack_each(&[2]).await.unwrap(), 5);
    });
    assert_eq!(cursor(&q, "slow"), 5);
}

#[test]
fn a_record_nacked_max_deliver_times_lands_in_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), 5);
    let q = a.root.join("orders");
    let counts = runtime().block_on(async {
        let options = ConsumerOptions::default()
            .ack_wait(Duration::from_secs(3600))
            .max_deliver(3)
            .dead_letter_queue("orders.poison");
        let mut c = RemoteConsumer::<Order>::connect_with(&addr(&a), "orders", "poison", options)
            .await
            .unwrap();
        let mut counts = Vec::new();
        // Bounded: records 0..5 once, record 2 three times, and a margin.
        for _ in 0..20 {
            let Some(d) = c.next_timeout(Duration::from_secs(2)).await.unwrap() else {
                break;
            };
            assert_eq!(d.message, order(d.seq));
            if d.seq == 2 {
                counts.push(d.delivery_count);
                c.nack(2, Duration::ZERO).await.unwrap();
            } else {
                c.ack_each(&[d.seq]).await.unwrap();
            }
        }
        counts
    });
    assert_eq!(
        counts,
        vec![1, 2, 3],
        "delivered max_deliver times, no more"
    );
    // The dead letter counts as done: the cursor passes record 2.
    wait_until("the cursor past the dead-lettered record", || {
        cursor(&q, "poison") == 5
    });
    assert!(
        !a.root.join("orders.dlq").exists(),
        "the named queue, not the default"
    );
    let letters = letters(&a.root.join("orders.poison"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(
        (
            l.queue.as_str(),
            l.connector.as_str(),
            l.direction.as_str(),
            l.seq
        ),
        ("orders", "poison", "consumer", Some(2))
    );
    assert_eq!(l.body, repliq::to_bytes(&order(2)).unwrap().to_vec());
    assert!(l.reason.contains("delivered 3 times"), "{}", l.reason);
    let (status, body) = support::http_get(a.http(), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        support::metric(
            &body,
            "repliq_client_dead_letters_total{queue=\"orders\",consumer=\"poison\"}"
        ),
        Some(1.0),
        "{body}"
    );
}

/// Connects, retrying while the daemon restarts (bounded).
async fn reconnect(addr: &str, name: &str, options: ConsumerOptions) -> RemoteConsumer<Order> {
    for _ in 0..200 {
        match RemoteConsumer::<Order>::connect_with(addr, "orders", name, options.clone()).await {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the consumer did not reconnect to {addr}");
}

#[test]
fn a_daemon_killed_with_records_in_flight_loses_none() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut a = node(dir.path(), N);
    let q = a.root.join("orders");
    let options = ConsumerOptions::default()
        .ack_wait(Duration::from_secs(3600))
        .max_deliver(2);
    let rt = runtime();
    let mut acked = std::collections::BTreeSet::new();
    let mut delivered_after_restart = Vec::new();
    let cursor_at_kill = rt.block_on(async {
        let mut c = reconnect(&addr(&a), "kill", options.clone()).await;
        // Records 0..150: the odd ones acknowledged, the even ones left in flight.
        for want in 0..150 {
            let d = next(&mut c).await;
            assert_eq!(d.seq, want);
            if d.seq % 2 == 1 {
                acked.insert(d.seq);
                assert_eq!(c.ack_each(&[d.seq]).await.unwrap(), 0);
            }
        }
        // Record 150 is dead-lettered (nacked max_deliver times) ahead of the cursor.
        let d = next(&mut c).await;
        assert_eq!((d.seq, d.delivery_count), (150, 1));
        c.nack(150, Duration::ZERO).await.unwrap();
        loop {
            let d = next(&mut c).await;
            if d.seq == 150 {
                assert_eq!(d.delivery_count, 2);
                c.nack(150, Duration::ZERO).await.unwrap();
                break;
            }
        }
        wait_until("record 150 in the dead-letter queue", || {
            a.root.join("orders.dlq").join("queue.meta").exists()
                && !letters(&a.root.join("orders.dlq")).is_empty()
        });
        cursor(&q, "kill")
    });
    assert_eq!(cursor_at_kill, 0, "record 0 was never acknowledged");
    a.kill9();
    a.start();
    rt.block_on(async {
        let mut c = reconnect(&addr(&a), "kill", options.clone()).await;
        assert_eq!(c.cursor(), 0, "the durable cursor survived");
        // Everything after the cursor is delivered again, except the dead-lettered record;
        // acknowledged in bursts, out of order (each batch backwards).
        while let Some(d) = c.next_timeout(Duration::from_secs(3)).await.unwrap() {
            assert_eq!(d.message, order(d.seq));
            delivered_after_restart.push(d.seq);
            if delivered_after_restart.len() % 7 == 0 {
                let burst: Vec<u64> = delivered_after_restart
                    .iter()
                    .rev()
                    .take(7)
                    .copied()
                    .collect();
                c.ack_each(&burst).await.unwrap();
                acked.extend(burst);
            }
        }
        let rest: Vec<u64> = delivered_after_restart
            .iter()
            .copied()
            .filter(|s| !acked.contains(s))
            .collect();
        assert_eq!(c.ack_each(&rest).await.unwrap(), N);
        acked.extend(rest);
    });
    let mut want: Vec<u64> = (0..N).filter(|s| *s != 150).collect();
    assert_eq!(
        acked.iter().copied().collect::<Vec<_>>(),
        want,
        "every record acknowledged at least once, record 150 dead-lettered"
    );
    want.retain(|s| *s >= cursor_at_kill);
    assert_eq!(
        delivered_after_restart, want,
        "every record after the cursor delivered again, in order, once, but the dead letter"
    );
    assert_eq!(cursor(&q, "kill"), N);
    let letters = letters(&a.root.join("orders.dlq"));
    assert_eq!(
        letters.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![Some(150)]
    );
}
