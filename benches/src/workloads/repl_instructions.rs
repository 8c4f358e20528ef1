//! `repliq-bench repl-instructions`: instructions per replicated payload byte, counted by
//! callgrind, for repliq's replication pipeline and for the raw tonic stream of the same bytes.
//! Unlike CPU time, the count does not move with the machine's load, so it can be compared
//! between commits on a busy machine (it leaves out the kernel: system calls, page faults and
//! write-back are not in it; `repl_cost` measures those as CPU time).
//!
//! Each row runs a worker process (this binary's hidden `repl-instructions-worker`) under
//! `valgrind --tool=callgrind --instr-atstart=no`; the worker sets up uninstrumented and counts
//! every thread between [`callgrind::start`] and [`callgrind::stop`]. Rows:
//!
//! * `repliq`: primary and replica in the one process: a filled journal is replicated by
//!   [`EmbeddedReplication`] (asynchronous) to repliq's `ReplicaService` served on loopback,
//!   counted from `start` until the replica acknowledged every record, the replication stopped
//!   and the replica's stream-end sync ran: the primary's tail watcher, frame reads and tonic
//!   send path, and the replica's receive, checks, `pwrite`s and sync calls.
//! * `repliq primary → acking sink`: the same primary streaming to the raw tonic sink
//!   (`tonic_raw`), which acknowledges each frame at once: the primary's share plus a receive
//!   without a journal. `repliq` minus this row is the replica's journal work.
//! * `raw tonic`: the harness's raw tonic stream (`tonic_raw::stream_frames`: 256 KiB frames,
//!   window 8) to the same sink, in the one process.
//!
//! Each row runs twice, with `count` messages and with [`SMALL`]; the difference of the counts
//! over the difference of the payload bytes is the per-byte figure (connections, runtimes and
//! queue creation cancel out). The primary's journal is one segment fitted to the messages (see
//! `fill`).
//!
//! `--watcher` counts instead the start of a primary on a 128 MiB backlog whose replica does not
//! answer, every thread for [`WATCHER_WAIT`]: the replication runtime's start, connection
//! attempts, and the tail watcher's walk to the tail and its check that the tail is not a hole
//! (`Walk::check_tail`, once the reservation lease passed). Nothing is streamed, so a change to
//! the watcher's start shows in the total.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use repliq::replication::EmbeddedReplication;

use super::replicas::Acks;
use super::repliq::{enqueue, options, primary_options};
use super::tonic_raw;
use crate::BoxResult;
use crate::callgrind;
use crate::clock::deadline;
use crate::msg::BenchMsg;

/// Messages of the small run whose count is subtracted (fixed costs).
pub const SMALL: u64 = 256;

/// Bytes of the backlog the `--watcher` row starts on.
pub const WATCHER_BACKLOG: u64 = 128 << 20;

/// How long the `--watcher` row counts after the watcher started: longer than the reservation
/// lease (200 ms) after which it checks the tail, with valgrind's slowdown.
pub const WATCHER_WAIT: Duration = Duration::from_secs(3);

/// Rows of the table, as the worker names them.
pub const MODES: &[&str] = &["repliq", "primary-to-sink", "raw-tonic"];

/// What the driver is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Payload sizes.
    pub sizes: Vec<usize>,
    /// Messages per counted run (`None`: 100 000 at 64 B, 16 384 at 1 KiB).
    pub count: Option<u64>,
    /// Where the journals go.
    pub dir: PathBuf,
    /// Names the build in the table's title.
    pub label: String,
    /// Count the tail watcher's start instead.
    pub watcher: bool,
}

/// The driver: one callgrind run per (row, size, count); prints a markdown table.
pub fn drive(req: &Request) -> BoxResult<()> {
    let exe = std::env::current_exe()?;
    if req.watcher {
        return drive_watcher(&exe, req);
    }
    println!(
        "instructions per replicated payload byte ({}; callgrind, user space, all threads)\n",
        req.label
    );
    println!(
        "| row | size | messages (run − small run) | instructions (run − small run) | \
         instructions / byte | of which byte copies (`mem*`) | without the copies |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &size in &req.sizes {
        let n = req
            .count
            .unwrap_or(if size <= 256 { 100_000 } else { 16_384 });
        let mut per_byte = Vec::new();
        for mode in MODES {
            let (big, acked) = count_run(&exe, mode, size, n, &req.dir)?;
            let (small, small_acked) = count_run(&exe, mode, size, SMALL, &req.dir)?;
            let bytes = (acked.saturating_sub(small_acked)) * size as u64;
            if bytes == 0 {
                return Err(
                    format!("{mode} {size} B: nothing more acknowledged than {SMALL}").into(),
                );
            }
            let ipb = big.total.saturating_sub(small.total) as f64 / bytes as f64;
            let copies = big.copies.saturating_sub(small.copies) as f64 / bytes as f64;
            per_byte.push((ipb, ipb - copies));
            println!(
                "| {} | {size} B | {acked} − {small_acked} | {} − {} | {ipb:.2} | {copies:.2} | {:.2} |",
                row_name(mode),
                big.total,
                small.total,
                ipb - copies
            );
        }
        println!(
            "| **repliq / raw tonic** (goal ≤ 1.5×) | {size} B | | | **{:.2}×** | | **{:.2}×** |",
            per_byte[0].0 / per_byte[2].0,
            per_byte[0].1 / per_byte[2].1
        );
    }
    Ok(())
}

fn row_name(mode: &str) -> &'static str {
    match mode {
        "repliq" => "repliq (primary + replica)",
        "primary-to-sink" => "repliq primary → acking sink",
        _ => "raw tonic (sender + acking sink)",
    }
}

/// One counted worker run: (instructions, messages acknowledged).
fn count_run(
    exe: &Path,
    mode: &str,
    size: usize,
    n: u64,
    dir: &Path,
) -> BoxResult<(callgrind::Counted, u64)> {
    let args = vec![
        "repl-instructions-worker".to_owned(),
        mode.to_owned(),
        size.to_string(),
        n.to_string(),
        dir.display().to_string(),
    ];
    let (collected, stdout) = callgrind::run_counted(exe, &args)?;
    let acked = stdout
        .lines()
        .find_map(|l| l.strip_prefix("acked=")?.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("no acked= line from the worker:\n{stdout}"))?;
    Ok((collected, acked))
}

fn drive_watcher(exe: &Path, req: &Request) -> BoxResult<()> {
    println!(
        "instructions of a primary's first {} s on a {} MiB backlog, replica unreachable \
         ({}; callgrind, user space, all threads)\n",
        WATCHER_WAIT.as_secs(),
        WATCHER_BACKLOG >> 20,
        req.label
    );
    println!("| journal | size | messages | instructions |");
    println!("|---|---:|---:|---:|");
    for &size in &req.sizes {
        let n = WATCHER_BACKLOG / size as u64;
        for (mode, journal) in [
            (
                "watcher",
                "filled with `prefault(true)` (the harness's queues)",
            ),
            ("watcher-plain", "filled without pre-faulting (the default)"),
        ] {
            let args = vec![
                "repl-instructions-worker".to_owned(),
                mode.to_owned(),
                size.to_string(),
                n.to_string(),
                req.dir.display().to_string(),
            ];
            let (collected, _) = callgrind::run_counted(exe, &args)?;
            println!("| {journal} | {size} B | {n} | {} |", collected.total);
        }
    }
    Ok(())
}

/// The worker: sets up `mode` uninstrumented, counts the replication of `n` messages of `size`
/// bytes, prints `acked=N`.
pub fn worker(mode: &str, size: usize, n: u64, dir: &Path) -> BoxResult<()> {
    let root = tempfile::tempdir_in(dir)?;
    let acked = match mode {
        "repliq" | "primary-to-sink" | "watcher" | "watcher-plain" => {
            let primary_dir = root.path().join("primary").join("benchq");
            let watcher = mode.starts_with("watcher");
            fill(&primary_dir, size, n, mode != "watcher-plain", !watcher)?;
            let port = crate::servers::free_port()?;
            let server = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let limit = Duration::from_secs(3600);
            let replica_root = root.path().join("replica");
            std::fs::create_dir_all(&replica_root)?;
            if watcher {
                // Nothing listens: the watcher's start is counted, not a stream.
                let _ = ready_tx.send(());
            } else if mode == "repliq" {
                server.spawn(async move {
                    let incoming =
                        tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], port).into())?
                            .with_nodelay(Some(true));
                    let _ = ready_tx.send(());
                    tonic::transport::Server::builder()
                        .add_service(
                            repliq::replication::ReplicaService::new(replica_root).into_server(),
                        )
                        .serve_with_incoming_shutdown(incoming, tokio::time::sleep(limit))
                        .await?;
                    BoxResult::Ok(())
                });
            } else {
                server.spawn(tonic_raw::serve_sink(port, None, limit, move || {
                    let _ = ready_tx.send(());
                }));
            }
            ready_rx.recv_timeout(Duration::from_secs(60))?;
            let acks = Arc::new(Acks::default());
            let opts =
                primary_options(repliq::ReplicationMode::Asynchronous, None).observer(acks.clone());
            let addr = format!("r0=127.0.0.1:{port}");
            if watcher {
                callgrind::start();
                let replication =
                    EmbeddedReplication::start(&primary_dir, "bench", &[addr.as_str()], opts)?;
                std::thread::sleep(WATCHER_WAIT);
                callgrind::stop();
                drop(replication);
                0
            } else {
                callgrind::start();
                let replication =
                    EmbeddedReplication::start(&primary_dir, "bench", &[addr.as_str()], opts)?;
                let acked = acks.wait_all(1, n, deadline(600.0));
                // The stream's end: the replica syncs what it applied.
                drop(replication);
                std::thread::sleep(super::repl_cost::SETTLE);
                callgrind::stop();
                acked
            }
        }
        "raw-tonic" => {
            let port = crate::servers::free_port()?;
            let server = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            server.spawn(tonic_raw::serve_sink(
                port,
                None,
                Duration::from_secs(3600),
                move || {
                    let _ = ready_tx.send(());
                },
            ));
            ready_rx.recv_timeout(Duration::from_secs(60))?;
            let client = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let total = n * size as u64;
            callgrind::start();
            let (_, sent, _) = client.block_on(tonic_raw::stream_frames(
                port,
                size,
                tonic_raw::FRAME,
                8,
                total,
                600.0,
            ))?;
            std::thread::sleep(super::repl_cost::SETTLE);
            callgrind::stop();
            sent * (tonic_raw::FRAME / size).max(1) as u64
        }
        other => {
            return Err(
                format!("unknown mode {other} (one of {MODES:?}, watcher, watcher-plain)").into(),
            );
        }
    };
    println!("acked={acked}");
    Ok(())
}

/// Fills a new primary journal at `dir` with `n` messages of `size` bytes (not counted), its
/// pages faulted in ahead of the producer (`prefault`) as in the harness's queues or not.
///
/// With `fitted`, one segment holds them with 1–2 MiB to spare instead of the harness's 64 MiB
/// segments: the tail watcher checks the rest of the last segment once (200 ms after it found
/// the tail, `Walk::check_tail`), whose size would otherwise differ between the runs of a row
/// and not cancel out.
fn fill(dir: &Path, size: usize, n: u64, prefault: bool, fitted: bool) -> BoxResult<()> {
    let mut m = BenchMsg::of_size(size);
    let mut opts = options(n, size).prefault(prefault);
    if fitted {
        let record = (repliq::to_bytes(&m)?.len() as u64 + 32).next_multiple_of(16);
        let data = n * record;
        opts = opts.segment_size((data + data / 64 + (1 << 20)).next_multiple_of(1 << 20));
    }
    let mut q = opts.create::<BenchMsg>(dir)?;
    let end = deadline(600.0);
    for i in 0..n {
        m.seq = i;
        enqueue(&mut q, &m, end)?;
    }
    q.warm_up(Duration::from_secs(10));
    Ok(())
}
