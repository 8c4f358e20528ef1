//! Pull requests of remote consumers in JetStream's shape, against a real `repliqd`: a request
//! with an expiry returns what there is when it lapses (and nothing on an empty queue) instead
//! of waiting for its full count; `max_bytes` limits a request's payload (a record larger than
//! a whole request still arrives, alone); idle heartbeats keep a quiet stream alive, and a node
//! that stops answering (SIGSTOP: no packet says the stream is dead) is detected after twice the
//! interval instead of at the caller's timeout.

mod support;

use std::path::Path;
use std::time::Duration;

use repliq::JournalQueue;
use repliq::client::{ClientError, ConsumerOptions, RemoteConsumer};
use support::{Daemon, Order, order};

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

/// `fetch` bounded at 20 s (a bound, not a speed goal): a request that never ends fails the test
/// instead of hanging it.
async fn bounded<T>(f: impl std::future::Future<Output = Result<T, ClientError>>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the request did not end within 20 s")
        .unwrap()
}

fn size(id: u64) -> u64 {
    repliq::to_bytes(&order(id)).unwrap().len() as u64
}

#[test]
fn a_request_returns_what_there_is_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = node(dir.path(), 3);
    let rt = runtime();
    rt.block_on(async {
        let mut c = RemoteConsumer::<Order>::connect(&addr(&a), "orders", "pull")
            .await
            .unwrap();
        // Three records for a request of ten: all three, once the request lapses.
        let got = bounded(c.fetch(10, 0, Duration::from_millis(500))).await;
        let ids: Vec<u64> = got.iter().map(|d| d.message.id).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        c.ack(got[2].seq).await.unwrap();
        // Nothing more: an empty answer at the expiry, not a wait for records.
        let got = bounded(c.fetch(10, 0, Duration::from_millis(300))).await;
        assert!(got.is_empty(), "{got:?}");
        // A request that fills before its expiry returns at once with its count.
        let mut q = JournalQueue::<Order>::open(a.root.join("orders")).unwrap();
        for id in 3..20 {
            q.enqueue(&order(id)).unwrap();
        }
        let got = bounded(c.fetch(5, 0, Duration::from_secs(600))).await;
        let ids: Vec<u64> = got.iter().map(|d| d.message.id).collect();
        assert_eq!(ids, vec![3, 4, 5, 6, 7]);
    });
    a.kill9();
}

#[test]
fn max_bytes_limits_a_request_and_a_large_record_comes_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Record sizes vary with the id (its body is id % 97 bytes).
    let mut a = node(dir.path(), 100);
    let rt = runtime();
    rt.block_on(async {
        let mut c = RemoteConsumer::<Order>::connect(&addr(&a), "orders", "bytes")
            .await
            .unwrap();
        // Room for records 0..k exactly: the request stops before k.
        let k = 10;
        let budget: u64 = (0..k).map(size).sum();
        let got = bounded(c.fetch(100, budget, Duration::from_secs(5))).await;
        let ids: Vec<u64> = got.iter().map(|d| d.message.id).collect();
        assert_eq!(ids, (0..k).collect::<Vec<_>>(), "budget {budget} bytes");
        let bytes: u64 = ids.iter().map(|&id| size(id)).sum();
        assert!(bytes <= budget);
        // A budget smaller than the next record: that record still comes, alone.
        let got = bounded(c.fetch(100, 1, Duration::from_secs(5))).await;
        let ids: Vec<u64> = got.iter().map(|d| d.message.id).collect();
        assert_eq!(ids, vec![k]);
        assert!(size(k) > 1);
    });
    a.kill9();
}

#[test]
fn heartbeats_keep_a_quiet_stream_alive_and_a_stopped_node_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = node(dir.path(), 1);
    let rt = runtime();
    rt.block_on(async {
        let options = ConsumerOptions::default().idle_heartbeat(Duration::from_millis(200));
        let mut c = RemoteConsumer::<Order>::connect_with(&addr(&a), "orders", "beats", options)
            .await
            .unwrap();
        let d = c
            .next_timeout(Duration::from_secs(20))
            .await
            .unwrap()
            .unwrap();
        c.ack(d.seq).await.unwrap();
        // A quiet queue for 2 s (ten intervals): heartbeats, no error.
        assert!(
            c.next_timeout(Duration::from_secs(2))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(c.cursor(), 1, "the heartbeats carry the durable cursor");

        // The node stops answering without closing anything: the next call fails as a dead
        // stream, instead of returning "nothing yet" at its 30 s timeout.
        support::signal(&a, libc::SIGSTOP);
        let waited = std::time::Instant::now();
        let r = c.next_timeout(Duration::from_secs(30)).await;
        support::signal(&a, libc::SIGCONT);
        match r {
            Err(ClientError::Transport { .. }) => {}
            other => panic!(
                "expected a dead stream after {:?}, got {other:?}",
                waited.elapsed()
            ),
        }
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("no record and no heartbeat"), "{e}");
        eprintln!(
            "dead stream detected after {:?} (interval 200 ms)",
            waited.elapsed()
        );
    });
    a.kill9();
}
