//! Failover: three `repliqd` in synchronous mode; the primary's daemon is killed with SIGKILL
//! under load; a replica is promoted; every acknowledged message is on it; the other replica
//! follows the new primary; the old primary, restarted, steps down, moves aside what it wrote
//! that was never acknowledged, and converges to the new primary's log.

mod support;

use std::path::Path;

use repliq::replication::grpc::proto::{
    Frame, Hello, PrimaryMessage, primary_message, refused, replica_message,
    replication_client::ReplicationClient,
};
use repliq::replication::{ReplicationState, Role};
use repliq::{Fingerprint, Message, QueueError, QueueOptions};
use support::{Daemon, held, wait_until};

#[repliq::message(name = "test.Payment")]
#[derive(Debug, Clone, PartialEq)]
struct Payment {
    id: u64,
    cents: i64,
}

fn queue(n: &Daemon) -> std::path::PathBuf {
    n.root.join("payments")
}

fn all_payments(dir: &Path) -> Vec<Payment> {
    let mut q = QueueOptions::new()
        .consumer("check")
        .open::<Payment>(dir)
        .unwrap();
    let mut out = Vec::new();
    while let Some(p) = q.dequeue().unwrap() {
        out.push(p);
    }
    q.remove_consumer("check");
    out
}

#[test]
fn promoted_replica_holds_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        // k = 1 of 2: a message is acknowledged once one replica holds it.
        let text = std::fs::read_to_string(&n.config).unwrap();
        let text = text.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 1\n",
        );
        std::fs::write(&n.config, text).unwrap();
        n.start();
    }
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .create::<Payment>(queue(&nodes[0]))
        .unwrap();
    // Wait until a's daemon replicates the queue synchronously.
    wait_until("a to replicate synchronously", || {
        ReplicationState::load(&queue(&nodes[0])).is_ok_and(|s| s.synchronous)
    });

    // Sync load; kill a's daemon half-way. Only `Ok` enqueues count as acknowledged.
    let mut acknowledged = Vec::new();
    for id in 0..3000u64 {
        if id == 1500 {
            nodes[0].kill9();
        }
        let p = Payment {
            id,
            cents: id as i64 * 7,
        };
        match q.enqueue(&p) {
            Ok(_) => acknowledged.push(p),
            Err(QueueError::Replication(_)) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        acknowledged.len() >= 1500,
        "{} acknowledged",
        acknowledged.len()
    );
    // One more local write that no replica gets: it must be moved aside later, not merged.
    let _ = q.enqueue(&Payment {
        id: 999_999,
        cents: 0,
    });
    drop(q);

    // Promote the replica that holds the most (what an operator, or a lease, would pick).
    let (new, other) = if held(&queue(&nodes[1])) >= held(&queue(&nodes[2])) {
        (1, 2)
    } else {
        (2, 1)
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repliq"))
        .arg("promote")
        .arg(queue(&nodes[new]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: ReplicationState = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state.role, Role::Primary);
    assert_eq!(state.epoch, 2);
    assert_eq!(ReplicationState::load(&queue(&nodes[new])).unwrap(), state);
    let on_b = all_payments(&queue(&nodes[new]));
    assert!(
        on_b.len() >= acknowledged.len() && on_b[..acknowledged.len()] == acknowledged[..],
        "an acknowledged message is missing on the promoted replica"
    );
    let err = ReplicationState::promote(&queue(&nodes[new])).unwrap_err();
    assert!(
        matches!(&err, QueueError::Replication(m) if m.to_string().contains("already the primary"))
    );

    // New writes on b reach c (b's daemon picks up the promotion).
    let mut qb = QueueOptions::new()
        .open::<Payment>(queue(&nodes[new]))
        .unwrap();
    let base = held(&queue(&nodes[new]));
    for id in 0..100 {
        qb.enqueue(&Payment {
            id: 10_000 + id,
            cents: 1,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    wait_until("the other replica to follow the new primary", || {
        held(&queue(&nodes[other])) == base + 100
    });

    // The old primary comes back: it steps down, moves its unreplicated tail aside and follows b.
    nodes[0].start();
    wait_until("a to converge", || {
        held(&queue(&nodes[0])) == base + 100
            && ReplicationState::load(&queue(&nodes[0])).is_ok_and(|s| s.role == Role::Replica)
    });
    assert_eq!(
        all_payments(&queue(&nodes[0])),
        all_payments(&queue(&nodes[new]))
    );
    let moved = queue(&nodes[0]).join("moved-aside");
    assert!(moved.exists(), "a's unacknowledged tail was moved aside");

    // A frame from the old epoch, sent by hand to replica c, is refused.
    let refusal = old_epoch_frame_to(nodes[other].grpc_port, held(&queue(&nodes[other])));
    assert_eq!(refusal.0, refused::Reason::StaleEpoch, "{}", refusal.1);
    assert!(refusal.1.contains("epoch 1"), "{}", refusal.1);
    assert_eq!(
        held(&queue(&nodes[other])),
        base + 100,
        "nothing was written"
    );
}

/// Opens a replication stream to `port` as an epoch-1 primary and sends one frame at `next_seq`.
/// Returns the replica's refusal.
fn old_epoch_frame_to(port: u16, next_seq: u64) -> (refused::Reason, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut client = ReplicationClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let hello = Hello {
            queue: "payments".into(),
            primary: "a".into(),
            epoch: 1,
            epoch_start: 0,
            message_type: Payment::NAME.into(),
            fingerprint: Payment::FINGERPRINT,
            segment_size: 1 << 20,
            capacity: 1_000_000,
            index_interval: 64,
            max_payload: 4096,
            schema_json: None,
            sync_lazily: false,
            epochs: Vec::new(),
        };
        let frame = Frame {
            epoch: 1,
            epoch_start: 0,
            segment_first_seq: 0,
            offset: 0,
            first_seq: next_seq,
            record_count: 0,
            bytes: Default::default(),
            producers: None,
            consumer_cursors: Vec::new(),
        };
        let msgs = [
            primary_message::Kind::Hello(hello),
            primary_message::Kind::Frame(frame),
        ]
        .map(|k| PrimaryMessage { kind: Some(k) });
        let mut replies = client
            .replicate(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner();
        while let Some(msg) = replies.message().await.unwrap() {
            if let Some(replica_message::Kind::Refused(r)) = msg.kind {
                return (r.reason(), r.detail);
            }
        }
        panic!("the replica did not refuse the old epoch's frame");
    })
}
