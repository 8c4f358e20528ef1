//! Issue 10 item 0: replicas that are caught up when the primary's segment rolls over must follow
//! it into the next segment. Two `repliqd` processes on loopback, a producer on the primary that
//! waits for the replica after every message (so the replica is caught up at every roll), small
//! and large messages, many rolls, and a replica restart exactly at a roll.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions};
use support::{Daemon, held, segment_files};

#[repliq::message(name = "test.Blob")]
#[derive(Debug, Clone, PartialEq)]
struct Blob {
    n: u64,
    data: Vec<u8>,
}

/// Mostly small messages, every 7th one large (a quarter of a segment), so that rolls happen
/// both with a few bytes left (END marker alone in the last 32 bytes) and with a large rest.
fn blob(n: u64) -> Blob {
    let len = if n % 7 == 3 {
        1000
    } else {
        (n as usize * 13) % 90
    };
    Blob {
        n,
        data: vec![n as u8; len],
    }
}

/// Waits (polling every millisecond, at most 20 s) until `dir` holds `count` records.
fn wait_held(dir: &Path, count: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while held(dir) < count {
        assert!(
            Instant::now() < deadline,
            "{what}: the replica holds {} records, {count} were written (stuck at a roll?)",
            held(dir)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn produce_paced(q: &mut JournalQueue<Blob>, replica: &Path, range: std::ops::Range<u64>) {
    for n in range {
        q.enqueue(&blob(n)).unwrap();
        wait_held(replica, n + 1, &format!("record {n}"));
    }
}

#[test]
fn a_caught_up_replica_follows_every_segment_roll() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "asynchronous");
    for n in &mut nodes {
        n.start();
    }
    let primary_dir = nodes[0].root.join("blobs");
    let replica_dir = nodes[1].root.join("blobs");
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(8192)
        .index_interval(8)
        .max_message_size(2048)
        .create::<Blob>(&primary_dir)
        .unwrap();
    produce_paced(&mut q, &replica_dir, 0..400);
    let rolls = segment_files(&primary_dir).len();
    assert!(rolls > 8, "the journal rolled over several times: {rolls}");
    assert!(segment_files(&replica_dir) == segment_files(&primary_dir));

    // Stop the replica exactly at a roll: the next message starts a new segment while it is
    // down, and after its restart it resumes from the END marker of the full segment.
    let seg_count = segment_files(&primary_dir).len();
    nodes[1].kill9();
    let mut n = 400;
    while segment_files(&primary_dir).len() == seg_count {
        q.enqueue(&blob(n)).unwrap();
        n += 1;
    }
    nodes[1].start();
    wait_held(&replica_dir, n, "after the restart at a roll");
    produce_paced(&mut q, &replica_dir, n..n + 200);
    assert!(
        segment_files(&replica_dir) == segment_files(&primary_dir),
        "the replica's segment files are byte-identical to the primary's"
    );
}
