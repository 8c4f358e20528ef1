//! Two repliq node daemons on loopback, in one process for the demo: a producer writes trades
//! into a queue on node A, node A's daemon streams the journal to node B, and a consumer reads the
//! replica on node B.
//!
//! `cargo run -p repliqd --example replication`

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use repliq::{JournalQueue, QueueError, QueueOptions};
use repliqd::{self as server, Config};

/// One trade.
#[repliq::message(name = "example.Trade")]
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub id: u64,
    pub symbol: String,
    pub price: i64,
}

fn free_port() -> repliq::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| QueueError::io("binding", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| QueueError::io("reading the address", e))?
        .port())
}

fn config(root: &Path, grpc: u16, peer: &str, peer_grpc: u16) -> repliq::Result<Config> {
    Config::from_yaml(&format!(
        "replication:
  mode: asynchronous
  discovery:
    method: static
    peers:
      - name: {peer}
        address: 127.0.0.1:{peer_grpc}
queue:
  capacity: 100000
  persistence:
    path: {}
server:
  grpc_listen: 127.0.0.1:{grpc}
  http_listen: 127.0.0.1:0
",
        root.display()
    ))
}

fn main() -> repliq::Result<()> {
    let dir = std::env::temp_dir().join(format!("repliq-replication-demo-{}", std::process::id()));
    let (root_a, root_b) = (dir.join("node-a"), dir.join("node-b"));
    let (grpc_a, grpc_b) = (free_port()?, free_port()?);
    let config_a = config(&root_a, grpc_a, "node-b", grpc_b)?;
    let config_b = config(&root_b, grpc_b, "node-a", grpc_a)?;

    let runtime = tokio::runtime::Runtime::new().map_err(|e| QueueError::io("tokio", e))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut daemons = Vec::new();
    for (config, name) in [(config_a, "node-a"), (config_b, "node-b")] {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        daemons.push(
            runtime.spawn(server::run(config, name.into(), shutdown, move |b| {
                println!("{name}: replication on {}", b.grpc);
            })),
        );
    }

    // The producer, on node A.
    std::fs::create_dir_all(&root_a).map_err(|e| QueueError::io("creating node-a", e))?;
    let mut producer = JournalQueue::<Trade>::new(root_a.join("trades"), 100_000)?;
    for id in 0..1000 {
        producer.enqueue(&Trade {
            id,
            symbol: ["ACME", "INIT", "GLOBEX"][id as usize % 3].into(),
            price: 10_000 + id as i64,
        })?;
    }
    println!("node-a: wrote 1000 trades");

    // The consumer, on node B: the replica appears once node A's daemon has found the queue.
    let replica = root_b.join("trades");
    let mut consumer = QueueOptions::new().open_wait::<Trade>(&replica, Duration::from_secs(30))?;
    let mut last = None;
    for _ in 0..1000 {
        last = consumer.dequeue_wait(Some(Duration::from_secs(30)))?;
        if last.is_none() {
            return Err(QueueError::Other(
                "a trade did not arrive within 30 s".into(),
            ));
        }
    }
    println!("node-b: read 1000 trades from its replica; the last one: {last:?}");

    let _ = stop.send(true);
    for d in daemons {
        runtime
            .block_on(d)
            .map_err(|e| QueueError::Other(e.to_string()))??;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
