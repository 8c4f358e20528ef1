//! "In progress" for remote pull consumers (`InProgress` of `repliq.client.v1` Consume) against
//! a real `repliqd`: a consumer that keeps saying it is still working on a record is not
//! delivered it again over several `ack_wait` periods, while a consumer of the same queue that
//! says nothing is (the control); once acknowledged, the record is not delivered again and the
//! durable cursor in the meta file passes it. "In progress" for a record never delivered is
//! refused.

mod support;

use std::path::Path;
use std::time::Duration;

use repliq::client::{ConsumerOptions, Delivery, Refused, RemoteConsumer};
use support::{Daemon, Order, order};

/// Short, so that several periods pass during the test; long next to the interval at which the
/// worker says "in progress" (below), so a loaded machine does not make it late.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// Each round waits this long for a delivery on each of the two consumers.
const LISTEN: Duration = Duration::from_millis(125);
/// 32 rounds of 2 × 125 ms: four `ack_wait` periods.
const ROUNDS: usize = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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

async fn consumer(a: &Daemon, name: &str) -> RemoteConsumer<Order> {
    let options = ConsumerOptions::default().ack_wait(ACK_WAIT);
    let c = RemoteConsumer::<Order>::connect_with(&addr(a), "orders", name, options)
        .await
        .unwrap();
    assert_eq!(c.settings().ack_wait, ACK_WAIT);
    c
}

/// The first delivery within 20 s (a bound, not a speed goal).
async fn first(c: &mut RemoteConsumer<Order>) -> Delivery<Order> {
    let d = c
        .next_timeout(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("a delivery within 20 s");
    assert_eq!((d.seq, d.delivery_count), (0, 1));
    assert_eq!(d.message, order(0), "the record's bytes");
    d
}

#[test]
fn a_record_in_progress_is_not_delivered_again_until_its_ack_wait_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::serving_clients(dir.path(), 1);
    let q = a.root.join("orders");
    runtime().block_on(async {
        let mut worker = consumer(&a, "worker").await;
        let mut control = consumer(&a, "control").await;
        first(&mut worker).await;
        first(&mut control).await;
        // Both hold record 0 without acknowledging it; only the worker says it is working.
        let mut worker_again = Vec::new();
        let mut control_again = Vec::new();
        for _ in 0..ROUNDS {
            if let Some(d) = worker.next_timeout(LISTEN).await.unwrap() {
                worker_again.push((d.seq, d.delivery_count));
            }
            if let Some(d) = control.next_timeout(LISTEN).await.unwrap() {
                control_again.push((d.seq, d.delivery_count));
            }
            worker.in_progress(0).await.unwrap();
        }
        assert!(
            control_again.first() == Some(&(0, 2)),
            "without `in progress` record 0 comes again after ack_wait: {control_again:?}"
        );
        assert_eq!(
            worker_again,
            vec![],
            "record 0 in progress was delivered again"
        );
        assert_eq!(cursor(&q, "worker"), 0);
        // Done: the cursor passes it, and nothing comes again for two ack_wait periods; an
        // "in progress" for the acknowledged record is ignored (the stream stays open).
        assert_eq!(worker.ack_each(&[0]).await.unwrap(), 1);
        worker.in_progress(0).await.unwrap();
        let late = worker.next_timeout(2 * ACK_WAIT).await.unwrap();
        assert!(late.is_none(), "delivered after its ack: {late:?}");
        assert_eq!(worker.ack(0).await.unwrap(), 1, "the stream is still open");
    });
    assert_eq!(cursor(&q, "worker"), 1);
    assert_eq!(cursor(&q, "control"), 0);
}

#[test]
fn in_progress_for_a_record_never_delivered_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::serving_clients(dir.path(), 1);
    runtime().block_on(async {
        let mut c = consumer(&a, "stray").await;
        first(&mut c).await;
        c.in_progress(7).await.unwrap();
        // The refusal ends the stream; it shows on the next call (bounded).
        let err = c.next_timeout(Duration::from_secs(20)).await.unwrap_err();
        assert_eq!(err.refused(), Some(&Refused::BadRequest), "{err}");
        assert!(
            err.to_string().contains("record 7 was not delivered"),
            "{err}"
        );
    });
}
