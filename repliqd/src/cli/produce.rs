//! `repliq produce --remote ADDR QUEUE`: JSON lines from standard input, each encoded with the
//! queue's schema and sent in batches by an idempotent producer.
//!
//! Lines are read by a thread and batched by what is there: a batch takes every line already
//! read, up to `--batch` lines and [`MAX_BATCH_BYTES`], so a file goes in large batches and a
//! trickle of lines (`tail -f | repliq produce`) is sent as it comes. Blank lines are skipped.
//! The first line that is not JSON or does not fit the schema stops the command: the lines
//! before it are sent, nothing from it on, and the error names its number.

use std::io::BufRead;

use repliq::client::{BatchAck, ProducerOptions, RawProducer};
use serde_json::Value;
use tokio::sync::mpsc;

use super::CliError;
use super::remote::RemoteArgs;

/// The most payload bytes of one batch (a gRPC message is at most 4 MiB).
pub const MAX_BATCH_BYTES: usize = 2 << 20;
/// Lines read ahead of the batches being sent.
const READ_AHEAD: usize = 1024;

/// `repliq produce`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// The queue's name on the node (its directory under the persistence path).
    pub queue: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The producer id the node deduplicates by. Default: `repliq-cli@HOSTNAME`.
    #[arg(long, value_name = "ID")]
    pub producer_id: Option<String>,
    /// The producer epoch. Default: the start time in milliseconds since the Unix epoch, so
    /// each run is a newer epoch of the id (the node keeps one entry per id, and a run started
    /// earlier on the same host with the same id is refused from then on).
    #[arg(long)]
    pub epoch: Option<u64>,
    /// The most lines in one batch.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// What a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The producer id and epoch used.
    pub producer_id: String,
    /// The epoch.
    pub epoch: u64,
    /// The node the records went to (the queue's primary).
    pub node: String,
    /// Records the node acknowledged.
    pub acknowledged: u64,
    /// Of those, records it already held (a retried batch: not written twice).
    pub duplicates: u64,
    /// Queue sequences of the first and last record written.
    pub queue_seqs: Option<(u64, u64)>,
}

impl Summary {
    fn add(&mut self, ack: &BatchAck) {
        self.acknowledged += u64::from(ack.count);
        self.duplicates += u64::from(ack.duplicates);
        if let Some((first, last)) = ack.queue_seqs {
            self.queue_seqs = Some(match self.queue_seqs {
                Some((f, _)) => (f, last),
                None => (first, last),
            });
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records acknowledged by {} ({} duplicates), producer {:?} epoch {}",
            self.acknowledged, self.node, self.duplicates, self.producer_id, self.epoch
        )?;
        if let Some((first, last)) = self.queue_seqs {
            write!(f, ", queue sequences {first}..={last}")?;
        }
        Ok(())
    }
}

/// The default producer id: `repliq-cli@` and the host's name.
fn default_producer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("repliq-cli@{host}")
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A line of input: its number and text, or the error reading it.
type Line = Result<(u64, String), CliError>;

/// Reads `input` line by line on a thread of its own into a channel.
fn read_lines(input: impl BufRead + Send + 'static) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        for (i, line) in input.lines().enumerate() {
            let number = i as u64 + 1;
            let line = line.map(|l| (number, l)).map_err(|e| CliError::BadLine {
                line: number,
                reason: format!("cannot be read: {e}"),
            });
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                break;
            }
        }
    });
    rx
}

/// Runs `repliq produce`: reads `input` to its end, sends every line, and returns what was
/// written. `progress` gets the summary after each batch (also when a later one fails).
///
/// # Errors
///
/// [`CliError::BadLine`] for the first line that is not a message of the queue's type (the
/// lines before it are sent); [`CliError::Client`] if the node refuses or cannot be reached
/// (after the producer's retries); [`CliError::NotEncodable`] for a queue whose type JSON
/// cannot express.
pub async fn run(
    args: &ProduceArgs,
    input: impl BufRead + Send + 'static,
    progress: &mut Summary,
) -> Result<(), CliError> {
    let description = args.remote.describe(&args.queue).await?;
    let root = &description.schema.root;
    repliq::descriptor::check_json_encodable(root).map_err(|e| CliError::NotEncodable {
        queue: args.queue.clone(),
        reason: e.to_string(),
    })?;
    progress.producer_id = args.producer_id.clone().unwrap_or_else(default_producer_id);
    progress.epoch = args.epoch.unwrap_or_else(now_millis);
    let mut options = ProducerOptions::default();
    if let Some(tls) = args.remote.tls() {
        options = options.tls(tls);
    }
    let mut producer = RawProducer::connect_with(
        &[args.remote.remote.as_str()],
        &args.queue,
        &description.message_type,
        description.fingerprint,
        &progress.producer_id,
        progress.epoch,
        options,
    )
    .await?;
    progress.node = producer.node().unwrap_or_default().to_owned();
    let mut lines = read_lines(input);
    let max = args.batch as usize;
    while let Some(first) = lines.recv().await {
        // Every line read by now, up to the batch's limits.
        let mut batch = vec![first];
        while batch.len() < max {
            match lines.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut bytes = 0;
        let mut bad = None;
        for line in batch {
            match line.and_then(|(number, text)| encode(root, number, &text)) {
                Ok(None) => {}
                Ok(Some(record)) => {
                    bytes += record.len();
                    records.push(bytes::Bytes::from(record));
                    if bytes >= MAX_BATCH_BYTES {
                        send(&mut producer, &mut records, progress).await?;
                        bytes = 0;
                    }
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        send(&mut producer, &mut records, progress).await?;
        if let Some(e) = bad {
            return Err(e);
        }
    }
    Ok(())
}

/// Line `number` as a record of type `root` (`None` for a blank line).
fn encode(
    root: &repliq::descriptor::Type,
    number: u64,
    text: &str,
) -> Result<Option<Vec<u8>>, CliError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = |reason: String| CliError::BadLine {
        line: number,
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    repliq::descriptor::from_json(root, &value)
        .map(Some)
        .map_err(|e| bad(format!("does not fit the queue's schema: {e}")))
}

/// Sends `records` (if any) as the producer's next batch and empties it.
async fn send(
    producer: &mut RawProducer,
    records: &mut Vec<bytes::Bytes>,
    progress: &mut Summary,
) -> Result<(), CliError> {
    if records.is_empty() {
        return Ok(());
    }
    let ack = producer
        .send_raw(producer.next_seq(), std::mem::take(records))
        .await?;
    progress.add(&ack);
    if let Some(node) = producer.node() {
        node.clone_into(&mut progress.node);
    }
    Ok(())
}
