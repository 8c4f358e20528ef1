//! `replication.discovery.members`: one static list naming every node, this one included (a
//! StatefulSet's shared ConfigMap). Each daemon drops its own entry, replicates to the others and
//! accepts streams from them; a synchronous `enqueue` on one node returns only once both others
//! hold the message, and their files are byte-identical.

mod support;

use repliq::JournalQueue;
use support::{Daemon, Order, free_port, held, order, segment_files, wait_until};

/// Rewrites each node's config with the same `members` list (only `server:` differs per node).
fn share_members(nodes: &[Daemon]) {
    let members: String = nodes
        .iter()
        .map(|d| {
            format!(
                "      - name: {}\n        address: 127.0.0.1:{}\n",
                d.name, d.grpc_port
            )
        })
        .collect();
    for d in nodes {
        std::fs::write(
            &d.config,
            format!(
                "replication:\n  mode: synchronous\n  discovery:\n    method: static\n    \
                 members:\n{members}\
                 queue:\n  capacity: 1000000\n  persistence:\n    path: {}\n\
                 server:\n  grpc_listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:{}\n  \
                 shutdown_grace_ms: 2000\n",
                d.root.display(),
                d.grpc_port,
                d.http_port
            ),
        )
        .unwrap();
    }
}

#[test]
fn a_shared_member_list_replicates_synchronously_to_the_other_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|n| Daemon::new(dir.path(), n, "synchronous", &[], free_port()))
        .collect();
    share_members(&nodes);
    for d in &mut nodes {
        d.start();
    }
    let queue = |d: &Daemon| d.root.join("orders");
    let mut q = JournalQueue::<Order>::new(queue(&nodes[0]), 10_000).unwrap();
    for id in 0..40 {
        let seq = q
            .enqueue(&order(id))
            .unwrap_or_else(|e| panic!("enqueue {id}: {e}"));
        // Required acknowledgements default to every other member: both hold it now.
        for replica in &nodes[1..] {
            assert!(
                held(&queue(replica)) > seq,
                "{} lacks seq {seq} after an acknowledged enqueue",
                replica.name
            );
        }
    }
    let primary_files = segment_files(&queue(&nodes[0]));
    assert!(!primary_files.is_empty());
    for replica in &nodes[1..] {
        wait_until("byte-identical segments", || {
            segment_files(&queue(replica)) == primary_files
        });
    }
    let log = std::fs::read_to_string(nodes[0].log_path()).unwrap();
    assert!(log.contains("skipping this node's own entry"), "{log}");
}
