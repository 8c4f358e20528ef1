//! `repliq consume --remote ADDR QUEUE --consumer NAME`: a durable consumer's records as JSON
//! lines on standard output, each batch acknowledged once it is printed and flushed.
//!
//! A line is `{"seq":N,"delivery_count":D,"message":{..}}`: `repliq cat`'s shape, with the
//! delivery count (1, or more for a redelivery) where `cat` has the write time (a delivery does
//! not carry it). The command asks the node for no more records than it still wants
//! (`--count`), so it leaves no record delivered and unacknowledged behind when it stops; a
//! record it printed but could not acknowledge (the connection dropped) is delivered again to
//! the next consumer of the name (at-least-once).

use std::io::Write;
use std::time::{Duration, Instant};

use repliq::client::{ConsumerOptions, RawConsumer};

use super::CliError;
use super::remote::RemoteArgs;

/// The most records asked for at once.
const FETCH: u64 = 256;
/// How long one pull request waits for records before the command looks at its deadline.
const POLL: Duration = Duration::from_secs(1);

/// `repliq consume`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// The queue's name on the node (its directory under the persistence path).
    pub queue: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The durable consumer name (its cursor lives in the queue on the primary; created at
    /// the queue's first record on first use).
    #[arg(long, value_name = "NAME")]
    pub consumer: String,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop once no record came for this many seconds (default: wait for records forever).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,
    /// How long a delivered record may stay unacknowledged before the node delivers it again,
    /// in seconds (the node's default: 30).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub ack_wait: Option<f64>,
    /// Deliveries of a record before it goes to the dead-letter queue (the node's default: 10).
    #[arg(long, value_name = "N")]
    pub max_deliver: Option<u32>,
    /// The dead-letter queue (the node's default: `QUEUE.dlq`).
    #[arg(long, value_name = "QUEUE")]
    pub dead_letter_queue: Option<String>,
}

/// A number of seconds from 0 to a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.0..=86_400.0).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{secs} is outside 0..=86400 seconds"))
    }
}

/// What a run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The node serving the consumer (the queue's primary); empty until connected.
    pub node: String,
    /// Records printed and acknowledged.
    pub acknowledged: u64,
    /// The consumer's durable cursor after the last acknowledgement (the first record not yet
    /// acknowledged).
    pub cursor: u64,
    /// Whether the reader of standard output went away (`| head`): the records not printed
    /// were not acknowledged.
    pub closed: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records printed and acknowledged; the consumer's cursor on {} is at {}",
            self.acknowledged, self.node, self.cursor
        )
    }
}

/// Runs `repliq consume`, printing to `out` until `--count` records were printed, `--timeout`
/// passed without a record, or `out`'s reader went away. `progress` holds what was done (also
/// when it fails).
///
/// # Errors
///
/// [`CliError::Client`] if the node refuses (no such queue, a newer consumer of the name took
/// over) or the connection fails; [`CliError::Render`] for a record the schema cannot render.
pub async fn run(
    args: &ConsumeArgs,
    out: &mut impl Write,
    progress: &mut Summary,
) -> Result<(), CliError> {
    let description = args.remote.describe(&args.queue).await?;
    let mut options = ConsumerOptions::default();
    if let Some(secs) = args.ack_wait {
        options = options.ack_wait(Duration::from_secs_f64(secs));
    }
    if let Some(n) = args.max_deliver {
        options = options.max_deliver(n);
    }
    if let Some(q) = &args.dead_letter_queue {
        options = options.dead_letter_queue(q);
    }
    if let Some(tls) = args.remote.tls() {
        options = options.tls(tls);
    }
    let mut consumer = RawConsumer::connect_with(
        &args.remote.remote,
        &args.queue,
        &description.message_type,
        description.fingerprint,
        &args.consumer,
        options,
    )
    .await?;
    progress.cursor = consumer.cursor();
    consumer.node().clone_into(&mut progress.node);
    let timeout = args.timeout.map(Duration::from_secs_f64);
    let mut last_record = Instant::now();
    loop {
        let wanted = args.count.map_or(FETCH, |n| {
            n.saturating_sub(progress.acknowledged).min(FETCH)
        });
        if wanted == 0 {
            return Ok(());
        }
        let wait = match timeout {
            Some(t) => t.saturating_sub(last_record.elapsed()).min(POLL),
            None => POLL,
        };
        if wait.is_zero() {
            return Ok(());
        }
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let deliveries = consumer.fetch(wanted, 0, wait).await?;
        if deliveries.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let mut text = String::new();
        let mut printed = Vec::with_capacity(deliveries.len());
        let mut failed = None;
        for d in &deliveries {
            match repliq::descriptor::to_json(&description.schema.root, &d.message) {
                Ok(message) => {
                    let line = serde_json::json!({
                        "seq": d.seq,
                        "delivery_count": d.delivery_count,
                        "message": message,
                    });
                    text.push_str(&line.to_string());
                    text.push('\n');
                    printed.push(d.seq);
                }
                Err(e) => {
                    failed = Some(CliError::Render {
                        seq: d.seq,
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        // Acknowledged only once the lines are out of this process.
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                progress.closed = true;
                return Ok(());
            }
            Err(source) => {
                return Err(CliError::Io {
                    what: "writing standard output",
                    source,
                });
            }
        }
        if !printed.is_empty() {
            progress.cursor = consumer.ack_each(&printed).await?;
            progress.acknowledged += printed.len() as u64;
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}
