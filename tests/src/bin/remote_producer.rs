//! Remote producer of the container cluster test (`.ci/container-cluster.sh`): writes through
//! the client protocol from a container of its own (no access to any node's files) and records
//! every acknowledged message, so the test can check that each is in the queue exactly once and
//! in the producer's order after the primary was killed under it.
//!
//! ```text
//! remote_producer SEEDS QUEUE PRODUCER_ID FIRST_ID COUNT BATCH [SECS]
//! ```
//!
//! `SEEDS` is a comma-separated list of `host:port` (its own node first). With
//! `REPLIQ_CLIENT_CA`, `REPLIQ_CLIENT_CERT` and `REPLIQ_CLIENT_KEY` set it speaks mutual TLS.
//! Sends orders `FIRST_ID..FIRST_ID+COUNT` in batches of `BATCH` as producer `PRODUCER_ID`
//! (epoch 1) for at most `SECS` seconds (default 180), printing one line per outcome:
//!
//! * `ACK seq id`: acknowledged and written by this try at queue sequence `seq`;
//! * `ACKDUP id`: acknowledged as already held (an earlier try whose acknowledgement was lost
//!   wrote it);
//! * `RETRY id error`: the batch starting at `id` failed with a retriable error after the
//!   client's own tries (a failover in progress); sent again with the same numbers;
//! * `ERR id error`: a refusal a retry would not change; it stops with exit code 1;
//!
//! and `DONE next_seq` after the last batch.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use repliq::client::{ClientError, ClientTls, ProducerOptions, RemoteProducer};
use repliq_tests::cluster::{Order, line, order};

struct Args {
    seeds: Vec<String>,
    queue: String,
    producer: String,
    first: u64,
    count: u64,
    batch: u64,
    secs: u64,
}

fn parse() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if !(6..=7).contains(&a.len()) {
        return Err(
            "usage: remote_producer SEEDS QUEUE PRODUCER_ID FIRST_ID COUNT BATCH [SECS]".into(),
        );
    }
    let number = |i: usize, what: &str| -> Result<u64, String> {
        a[i].parse().map_err(|e| format!("{what} {:?}: {e}", a[i]))
    };
    Ok(Args {
        seeds: a[0].split(',').map(str::to_owned).collect(),
        queue: a[1].clone(),
        producer: a[2].clone(),
        first: number(3, "FIRST_ID")?,
        count: number(4, "COUNT")?,
        batch: number(5, "BATCH")?.max(1),
        secs: if a.len() == 7 {
            number(6, "SECS")?
        } else {
            180
        },
    })
}

fn options() -> ProducerOptions {
    let var = |name| std::env::var(name).ok();
    match (
        var("REPLIQ_CLIENT_CA"),
        var("REPLIQ_CLIENT_CERT"),
        var("REPLIQ_CLIENT_KEY"),
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            ProducerOptions::default().tls(ClientTls::new(ca).identity(cert, key))
        }
        _ => ProducerOptions::default(),
    }
}

fn retriable(e: &ClientError) -> bool {
    match e.refused() {
        Some(r) => r.is_retriable(),
        None => matches!(e, ClientError::Transport { .. }),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let seeds: Vec<&str> = args.seeds.iter().map(String::as_str).collect();
    let mut producer = loop {
        match RemoteProducer::<Order>::connect_with(
            &seeds,
            &args.queue,
            &args.producer,
            1,
            options(),
        )
        .await
        {
            Ok(p) => break p,
            Err(e) if retriable(&e) && Instant::now() < deadline => {
                line(&format!("RETRY {} connect: {e}", args.first));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("ERR {} connect: {e}", args.first)),
        }
    };
    let end = args.first.saturating_add(args.count);
    let mut first = args.first;
    while first < end {
        let messages: Vec<Order> = (first..end.min(first + args.batch)).map(order).collect();
        let ack = loop {
            match producer.send_batch(&messages).await {
                Ok(ack) => break ack,
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    line(&format!("RETRY {first} {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("ERR {first} {e}")),
            }
        };
        // The node held the first `duplicates` from an earlier try; this try wrote the rest,
        // at consecutive queue sequences.
        let held = ack.duplicates as usize;
        for (i, m) in messages.iter().enumerate() {
            match ack.queue_seqs {
                Some((from, _)) if i >= held => {
                    line(&format!("ACK {} {}", from + (i - held) as u64, m.id))
                }
                _ => line(&format!("ACKDUP {}", m.id)),
            }
        }
        first += messages.len() as u64;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    line(&format!("DONE {}", producer.next_seq()));
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("remote_producer: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("remote_producer: a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            line(&e);
            ExitCode::FAILURE
        }
    }
}
