//! Only peers may speak replication: a `repliqd` accepts a replication stream only from a
//! primary in its peer set, so a stranger's `Hello` with a newer epoch demotes nothing and
//! touches no file; a `Hello` describing an impossible queue is refused and leaves no directory.

mod support;

use repliq::replication::grpc::proto::{
    Hello, PrimaryMessage, primary_message, refused, replica_message,
    replication_client::ReplicationClient,
};
use repliq::replication::{ReplicationState, Role};
use repliq::{Fingerprint, JournalQueue, Message};
use support::{Daemon, Order, free_port, order, wait_until};

fn hello(primary: &str, queue: &str, epoch: u64) -> Hello {
    Hello {
        queue: queue.into(),
        primary: primary.into(),
        epoch,
        epoch_start: 0,
        message_type: Order::NAME.into(),
        fingerprint: Order::FINGERPRINT,
        segment_size: 1 << 20,
        capacity: 1_000,
        index_interval: 64,
        max_payload: 4096,
        schema_json: None,
        sync_lazily: false,
        epochs: Vec::new(),
    }
}

/// Sends `hello` to the replica service at `port`; the refusal, or `None` if it subscribed.
fn send_hello(port: u16, hello: Hello) -> Option<(refused::Reason, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut client = ReplicationClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(PrimaryMessage {
            kind: Some(primary_message::Kind::Hello(hello)),
        })
        .await
        .unwrap();
        let mut replies = client
            .replicate(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(30), replies.message())
            .await
            .expect("the replica answers the Hello")
            .unwrap();
        drop(tx);
        match reply.and_then(|m| m.kind) {
            Some(replica_message::Kind::Refused(r)) => Some((r.reason(), r.detail)),
            Some(replica_message::Kind::Subscribe(_)) => None,
            other => panic!("unexpected reply {other:?}"),
        }
    })
}

#[test]
fn a_stranger_cannot_demote_a_primary_and_bad_geometry_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(
        dir.path(),
        "a",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    a.start();
    let queue = a.root.join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1_000).unwrap();
    q.enqueue(&order(1)).unwrap();
    wait_until("a's daemon to replicate the queue", || {
        ReplicationState::load(&queue).is_ok_and(|s| s.primary.as_deref() == Some("a"))
    });
    let state_file = std::fs::read(queue.join("replication.json")).unwrap();

    // "evil" claims epoch 1000 for the queue a is primary of.
    let (reason, detail) = send_hello(a.grpc_port, hello("evil", "orders", 1000)).unwrap();
    assert_eq!(reason, refused::Reason::NotAPeer, "{detail}");
    assert!(detail.contains("\"evil\" is not a peer"), "{detail}");
    assert_eq!(
        std::fs::read(queue.join("replication.json")).unwrap(),
        state_file
    );
    assert_eq!(ReplicationState::load(&queue).unwrap().role, Role::Primary);
    q.enqueue(&order(2)).expect("a is still the primary");
    // Nor may a stranger create queues.
    let (reason, _) = send_hello(a.grpc_port, hello("evil", "planted", 1)).unwrap();
    assert_eq!(reason, refused::Reason::NotAPeer);
    assert!(!a.root.join("planted").exists());

    // A peer's Hello with an impossible geometry is refused before anything is created.
    type Spoil = fn(&mut Hello);
    let bad: [(&str, Spoil); 6] = [
        ("segment size 0", |h| h.segment_size = 0),
        ("segment size 2^40", |h| h.segment_size = 1 << 40),
        ("segment size not a page multiple", |h| {
            h.segment_size = 5000
        }),
        ("index interval 0", |h| h.index_interval = 0),
        ("capacity 0", |h| h.capacity = 0),
        ("empty type name", |h| h.message_type.clear()),
    ];
    for (what, spoil) in bad {
        let mut h = hello("b", "bogus", 1);
        spoil(&mut h);
        let refusal = send_hello(a.grpc_port, h);
        assert!(
            matches!(&refusal, Some((refused::Reason::InvalidHello, _))),
            "{what}: {refusal:?}"
        );
        assert!(!a.root.join("bogus").exists(), "{what} left a directory");
    }
    // The same Hello with a sane geometry is accepted (the peer check is not a blanket refusal).
    assert_eq!(send_hello(a.grpc_port, hello("b", "fine", 1)), None);
    assert!(a.root.join("fine").join("queue.meta").exists());
    assert_eq!(
        ReplicationState::load(&a.root.join("fine")).unwrap().role,
        Role::Replica
    );
}
