//! The results file (JSON) and its Markdown rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuCost;
use crate::stats::{Latency, Throughput};
use crate::workloads::{Kind, Memory};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `smoke`, `quick` or `full`.
    pub mode: String,
    /// The command that produced this file.
    pub command: String,
    /// UTC start time.
    pub started_utc: String,
    /// Wall-clock seconds of the whole run.
    pub duration_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// Which systems ran and which were skipped, and why.
    pub systems: Vec<SystemStatus>,
    /// Measurements.
    pub rows: Vec<Row>,
    /// Measurements that were skipped, and why.
    pub skipped: Vec<Skip>,
    /// Costs of the typed byte path.
    pub rkyv: Vec<RkyvRow>,
}

/// The machine a run came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs available to the run.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Whether producer and consumer were pinned to different cores.
    pub pinned: bool,
    /// `/proc/loadavg` before the run.
    pub loadavg_before: String,
    /// `/proc/loadavg` after the run.
    pub loadavg_after: String,
    /// Most `rustc` processes seen running at once during the run (other builds on the box).
    pub rustc_seen: usize,
    /// `/proc/pressure/cpu` "some" line after the run: the share of time runnable tasks waited
    /// for a CPU (avg10/avg60/avg300).
    #[serde(default)]
    pub cpu_pressure: String,
}

/// One system's participation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemStatus {
    /// System name.
    pub system: String,
    /// Whether it ran.
    pub ran: bool,
    /// Version when it ran, the reason when it did not.
    pub detail: String,
}

/// One measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// Workload group, e.g. `pingpong`, `oneway@100k`, `throughput`, `durability`.
    pub workload: String,
    /// What was measured.
    pub kind: Option<Kind>,
    /// System name (and variant).
    pub system: String,
    /// Payload bytes.
    pub size: usize,
    /// Messages sent.
    pub sent: u64,
    /// Latency percentiles.
    pub latency: Option<Latency>,
    /// Throughput.
    pub throughput: Option<Throughput>,
    /// Remarks.
    pub note: Option<String>,
    /// Repeated latency rows: every run's p50/p99 and CPU pressure; `latency` is the median
    /// run's (the run with the median p99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<Repeats>,
    /// CPU pressure during the row's run (for a repeated row: during its median run), in per
    /// cent of wall time: the growth of `/proc/pressure/cpu` "some total" over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_cpu_some_pct: Option<f64>,
    /// Set when a run of the row ran under CPU pressure above [`CONTENDED_PCT`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contended: bool,
    /// Resident memory beyond the mapped file pages, for throughput rows of repliq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU time spent on the row's bytes, by process or thread (replication cost rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuCost>,
}

/// Workload label prefix of the replication cost rows (CPU per replicated byte).
pub const REPL_COST: &str = "repl-cost";
/// Workload label prefix of the three-copy rows (repliq with 2 replicas, NATS JetStream R3).
pub const REPL_R3: &str = "repl-r3";
/// System name prefixes of the three-copy rows, which the goals compare.
pub const R3_REPLIQ_SYNC: &str = "repliq sync";
/// See [`R3_REPLIQ_SYNC`].
pub const R3_REPLIQ_ASYNC: &str = "repliq async";
/// See [`R3_REPLIQ_SYNC`].
pub const R3_NATS_SYNC: &str = "nats-jetstream R3, window 1";
/// See [`R3_REPLIQ_SYNC`].
pub const R3_NATS_WINDOW: &str = "nats-jetstream R3, window";

/// Workload label prefix of the remote produce throughput rows (producers only, acknowledged).
pub const REMOTE_TPUT: &str = "remote-throughput";
/// Workload label prefix of the remote produce → acknowledge latency rows.
pub const REMOTE_LAT: &str = "remote-latency";
/// System name prefixes of the remote produce rows, which the goals of issue 21 compare.
pub const REMOTE_REPLIQ: &str = "repliq remote";
/// See [`REMOTE_REPLIQ`].
pub const REMOTE_NATS: &str = "nats-jetstream R1";
/// See [`REMOTE_REPLIQ`].
pub const REMOTE_REDIS: &str = "redis-streams";

/// The system name of a remote produce throughput row: `who` (one of [`REMOTE_REPLIQ`],
/// [`REMOTE_NATS`], [`REMOTE_REDIS`]), how it sends, and its number of producers.
pub fn remote_system(who: &str, producers: usize) -> String {
    let how = match who {
        REMOTE_REPLIQ => "batches of 256, each acknowledged",
        REMOTE_NATS => "publish with up to 256 acks outstanding",
        _ => "XADD in pipelines of 128",
    };
    let s = if producers == 1 { "" } else { "s" };
    format!("{who}, {how}, {producers} producer{s}")
}

/// CPU pressure (per cent of a run's wall time some task waited for a CPU) above which a run is
/// flagged as contended. The harness's own two spinning processes on two cores cause ~10–15 %.
pub const CONTENDED_PCT: f64 = 25.0;

/// One run of a repeated row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Median of this run.
    pub p50_ns: u64,
    /// 99th percentile of this run.
    pub p99_ns: u64,
    /// Largest sample of this run.
    pub max_ns: u64,
    /// CPU pressure during this run, per cent of its wall time.
    pub psi_cpu_some_pct: Option<f64>,
}

/// The runs of a repeated latency row and their spread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repeats {
    /// Every run, in the order they ran.
    pub runs: Vec<RunSummary>,
    /// Index into `runs` of the run reported in the row's `latency`.
    pub median_run: usize,
    /// Lowest p50 of the runs.
    pub p50_min_ns: u64,
    /// Highest p50 of the runs.
    pub p50_max_ns: u64,
    /// Lowest p99 of the runs.
    pub p99_min_ns: u64,
    /// Highest p99 of the runs.
    pub p99_max_ns: u64,
}

impl Repeats {
    /// The spread of `runs`, with `median_run` the index of the run with the median p99.
    pub fn of(runs: Vec<RunSummary>) -> Option<Self> {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by_key(|&i| (runs[i].p99_ns, runs[i].p50_ns));
        let median_run = *order.get(order.len().checked_sub(1)? / 2)?;
        let p50 = runs.iter().map(|r| r.p50_ns);
        let p99 = runs.iter().map(|r| r.p99_ns);
        Some(Repeats {
            median_run,
            p50_min_ns: p50.clone().min()?,
            p50_max_ns: p50.max()?,
            p99_min_ns: p99.clone().min()?,
            p99_max_ns: p99.max()?,
            runs,
        })
    }
}

/// A measurement that did not happen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skip {
    /// Workload group.
    pub workload: String,
    /// System name.
    pub system: String,
    /// Why.
    pub reason: String,
}

/// Nanoseconds per operation of the typed byte path for one size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RkyvRow {
    /// Archived message size.
    pub size: usize,
    /// `serialize_into` an aligned slot.
    pub serialize_into_ns: f64,
    /// Validated `access`.
    pub access_ns: f64,
    /// `access_unchecked`.
    pub access_unchecked_ns: f64,
    /// `deserialize` to an owned value.
    pub deserialize_ns: f64,
}

/// Human units for nanoseconds.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Human units for a rate.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Human units for bytes (binary prefixes).
pub fn fmt_bytes(b: f64) -> String {
    let a = b.abs();
    if a >= f64::from(1u32 << 20) {
        format!("{:.1} MiB", b / f64::from(1u32 << 20))
    } else if a >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn fmt_size(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A heading for a workload group.
pub fn group_title(workload: &str, size: usize) -> String {
    let what = if workload == "pingpong" {
        "Ping-pong round trip (two processes or threads)".to_owned()
    } else if let Some(rate) = workload.strip_prefix("oneway@") {
        format!("One-way latency, writer → reader, paced at {rate} msg/s")
    } else if workload == "throughput" {
        "Throughput, 1 producer → 1 consumer, flat out".to_owned()
    } else if let Some(rest) = workload.strip_prefix("throughput-") {
        format!("Throughput, {rest}")
    } else if workload == "enqueue" {
        "repliq enqueue cost per call, synchronous vs async handle (one process)".to_owned()
    } else if workload == "durability" {
        "repliq enqueue cost by durability mode (one process)".to_owned()
    } else if workload == "recovery" {
        "Recovery: open a queue after kill -9 of its writer".to_owned()
    } else {
        workload.to_owned()
    };
    format!("{what}, {}", fmt_size(size))
}

/// Groups rows by (workload, size), in first-seen order.
pub fn groups(rows: &[Row]) -> Vec<((String, usize), Vec<&Row>)> {
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut map: BTreeMap<(String, usize), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let key = (r.workload.clone(), r.size);
        if !map.contains_key(&key) {
            order.push(key.clone());
        }
        map.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let v = map.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

/// The systems ratios are given against, in this order, when present in a group.
const RATIO_BASES: &[&str] = &[
    "floor",
    "crossbeam",
    "iceoryx2",
    "redis-streams",
    "nats-jetstream",
    "raw tonic",
];

impl Results {
    fn row(&self, workload: &str, size: usize, system: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.size == size && r.system == system)
    }

    fn p50_ratio(&self, workload: &str, size: usize, a: &str, b: &str) -> Option<f64> {
        let x = self.row(workload, size, a)?.latency.as_ref()?.p50_ns as f64;
        let y = self.row(workload, size, b)?.latency.as_ref()?.p50_ns as f64;
        (y > 0.0).then(|| x / y)
    }

    fn tput_ratio(&self, workload: &str, size: usize, a: &str, b: &str) -> Option<f64> {
        let x = self
            .row(workload, size, a)?
            .throughput
            .as_ref()?
            .msgs_per_sec;
        let y = self
            .row(workload, size, b)?
            .throughput
            .as_ref()?
            .msgs_per_sec;
        (y > 0.0).then(|| x / y)
    }

    /// The ratios the project's goals are stated in, from this run.
    pub fn headline(&self) -> String {
        let mut s =
            String::from("## Headline ratios (this run)\n\n| ratio | value |\n|---|---:|\n");
        let fmt = |r: Option<f64>| match r {
            None => "n/a (not measured)".to_owned(),
            Some(x) if x >= 100.0 => format!("{x:.0}×"),
            Some(x) if x < 0.01 => format!("{x:.4}×"),
            Some(x) => format!("{x:.2}×"),
        };
        let mut oneways: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.workload.starts_with("oneway@") && r.size == 64)
            .map(|r| r.workload.as_str())
            .collect();
        oneways.dedup();
        for w in oneways {
            let rate = w.trim_start_matches("oneway@");
            let _ = writeln!(
                s,
                "| repliq / floor, one-way p50, 64 B @ {rate} msg/s (goal ≤ 1.5×) | {} |",
                fmt(self.p50_ratio(w, 64, "repliq", "floor"))
            );
            let _ = writeln!(
                s,
                "| repliq / iceoryx2, one-way p50, 64 B @ {rate} msg/s | {} |",
                fmt(self.p50_ratio(w, 64, "repliq", "iceoryx2"))
            );
        }
        let _ = writeln!(
            s,
            "| repliq / floor, ping-pong p50, 64 B | {} |",
            fmt(self.p50_ratio("pingpong", 64, "repliq", "floor"))
        );
        let _ = writeln!(
            s,
            "| repliq / iceoryx2, ping-pong p50, 64 B | {} |",
            fmt(self.p50_ratio("pingpong", 64, "repliq", "iceoryx2"))
        );
        let mut sizes: Vec<usize> = self
            .rows
            .iter()
            .filter(|r| r.workload == "throughput")
            .map(|r| r.size)
            .collect();
        sizes.dedup();
        for size in sizes {
            let _ = writeln!(
                s,
                "| repliq / Redis Streams, throughput 1→1, {} | {} |",
                fmt_size(size),
                fmt(self.tput_ratio("throughput", size, "repliq", "redis-streams"))
            );
            let _ = writeln!(
                s,
                "| repliq / NATS JetStream, throughput 1→1, {} | {} |",
                fmt_size(size),
                fmt(self.tput_ratio("throughput", size, "repliq", "nats-jetstream"))
            );
            let _ = writeln!(
                s,
                "| repliq / floor, throughput 1→1, {} | {} |",
                fmt_size(size),
                fmt(self.tput_ratio("throughput", size, "repliq", "floor"))
            );
        }
        for r in self.rows.iter().filter(|r| {
            r.workload.starts_with("replication async") && r.system.starts_with("repliq")
        }) {
            if let Some(t) = &r.throughput {
                let _ = writeln!(
                    s,
                    "| repliq async replication to 1 replica, {}: msgs/s at the replica (MB/s) | {} ({:.1}) |",
                    fmt_size(r.size),
                    fmt_rate(t.msgs_per_sec),
                    t.mb_per_sec
                );
            }
        }
        for r in self.rows.iter().filter(|r| {
            r.workload.starts_with("replication async") && r.system.starts_with("repliq")
        }) {
            let _ = writeln!(
                s,
                "| repliq async replication / raw tonic stream, throughput, {} | {} |",
                fmt_size(r.size),
                fmt(self.tput_ratio(&r.workload, r.size, &r.system, "raw tonic"))
            );
        }
        let sync_p50 = |prefix: &str| {
            self.rows
                .iter()
                .find(|r| {
                    r.workload.starts_with("replication sync") && r.system.starts_with(prefix)
                })
                .and_then(|r| r.latency.as_ref())
                .map(|l| l.p50_ns as f64)
        };
        if let Some(enqueue) = sync_p50("repliq enqueue") {
            for (what, prefix) in [
                ("raw tonic ping-pong p50 (goal ≤ 1.5×)", "raw tonic"),
                ("floor: ping-pong + durable 4 KiB write p50", "floor:"),
            ] {
                let _ = writeln!(
                    s,
                    "| repliq synchronous enqueue p50 / {what} | {} |",
                    fmt(sync_p50(prefix).map(|b| enqueue / b))
                );
            }
        }
        s.push('\n');
        s
    }

    /// The CPU cost of replication next to raw tonic's, and repliq's three copies next to NATS
    /// JetStream R3, with the goals of issue 25 evaluated on this run's figures.
    pub fn replication_cost(&self) -> String {
        let cost_rows: Vec<&Row> = self.rows.iter().filter(|r| r.cpu.is_some()).collect();
        if cost_rows.is_empty() {
            return String::new();
        }
        let mut s = String::from(
            "## Replication cost: CPU per replicated byte (this run)\n\n\
             CPU time (user + system) of every process and thread involved, from \
             `getrusage` (µs) or, for the NATS servers, `/proc/<pid>/stat` (10 ms ticks); bytes \
             are payload bytes the receiving side acknowledged. It does not depend on how many \
             cores are free, unlike the wall-clock rows.\n\n\
             | workload | system | size | payload MB | CPU ms | MB per CPU-second | CPU ns per byte | CPU per byte × raw tonic | where the CPU went |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &cost_rows {
            let Some(c) = &r.cpu else { continue };
            let base = self
                .rows
                .iter()
                .find(|b| {
                    b.workload == r.workload
                        && b.size == r.size
                        && b.system.starts_with("raw tonic")
                })
                .and_then(|b| b.cpu.as_ref())
                .filter(|b| b.ns_per_byte() > 0.0);
            let ratio = base.map_or("—".to_owned(), |b| {
                format!("{:.2}×", c.ns_per_byte() / b.ns_per_byte())
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {ratio} | {} |",
                r.workload.split(':').next().unwrap_or_default(),
                r.system,
                fmt_size(r.size),
                c.bytes as f64 / 1e6,
                c.total_ns() as f64 / 1e6,
                c.bytes_per_cpu_sec() / 1e6,
                c.ns_per_byte(),
                c.breakdown()
            );
        }
        s.push_str("\n| goal (issue 25) | size | value | met |\n|---|---:|---:|---|\n");
        let find = |w: &str, size: usize, sys: &str| {
            self.rows
                .iter()
                .find(|r| r.workload.starts_with(w) && r.size == size && r.system.starts_with(sys))
        };
        let mut sizes: Vec<usize> = self
            .rows
            .iter()
            .filter(|r| r.workload.starts_with(REPL_COST) || r.workload.starts_with(REPL_R3))
            .map(|r| r.size)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let met = |ok: bool| if ok { "yes" } else { "**no**" };
        for &size in &sizes {
            let cpu = |sys: &str| {
                find(REPL_COST, size, sys)
                    .and_then(|r| r.cpu.as_ref())
                    .map(CpuCost::ns_per_byte)
                    .filter(|x| *x > 0.0)
            };
            if let (Some(a), Some(b)) = (cpu("repliq"), cpu("raw tonic")) {
                let x = a / b;
                let _ = writeln!(
                    s,
                    "| repliq catch-up CPU per byte ≤ 1.5× raw tonic's | {} | {x:.2}× | {} |",
                    fmt_size(size),
                    met(x <= 1.5)
                );
            }
            let tput = |sys: &str| {
                find(REPL_R3, size, sys)
                    .and_then(|r| r.throughput.as_ref())
                    .map(|t| t.msgs_per_sec)
                    .filter(|x| *x > 0.0)
            };
            for (what, a, b) in [
                (
                    "repliq async (2 replicas) msgs/s ≥ 3× NATS R3 (window)",
                    R3_REPLIQ_ASYNC,
                    R3_NATS_WINDOW,
                ),
                (
                    "repliq sync (2 acks) msgs/s ≥ 3× NATS R3 (window 1)",
                    R3_REPLIQ_SYNC,
                    R3_NATS_SYNC,
                ),
            ] {
                // A window row's name also starts with `R3_NATS_WINDOW`: pick the other one.
                let b_rate = if b == R3_NATS_WINDOW {
                    self.rows
                        .iter()
                        .find(|r| {
                            r.workload.starts_with(REPL_R3)
                                && r.size == size
                                && r.system.starts_with(b)
                                && !r.system.starts_with(R3_NATS_SYNC)
                        })
                        .and_then(|r| r.throughput.as_ref())
                        .map(|t| t.msgs_per_sec)
                } else {
                    tput(b)
                };
                if let (Some(x), Some(y)) = (tput(a), b_rate.filter(|y| *y > 0.0)) {
                    let _ = writeln!(
                        s,
                        "| {what} | {} | {:.2}× | {} |",
                        fmt_size(size),
                        x / y,
                        met(x / y >= 3.0)
                    );
                }
            }
            let p99 = |sys: &str| {
                find(REPL_R3, size, sys)
                    .and_then(|r| r.latency.as_ref())
                    .map(|l| l.p99_ns as f64)
            };
            if let (Some(a), Some(b)) = (p99(R3_REPLIQ_SYNC), p99(R3_NATS_SYNC)) {
                let _ = writeln!(
                    s,
                    "| repliq sync p99 ≤ NATS R3 acknowledged-publish p99 | {} | {} vs {} | {} |",
                    fmt_size(size),
                    fmt_ns(a),
                    fmt_ns(b),
                    met(a <= b)
                );
            }
        }
        s.push('\n');
        s
    }

    /// Remote produce next to NATS JetStream and Redis Streams, with the goals of issue 21
    /// evaluated on this run's figures; empty when no remote row was measured.
    pub fn remote_goals(&self) -> String {
        let find = |w: &str, size: usize, sys: &str| {
            self.rows
                .iter()
                .find(|r| r.workload.starts_with(w) && r.size == size && r.system.starts_with(sys))
        };
        let mut sizes: Vec<usize> = self
            .rows
            .iter()
            .filter(|r| {
                r.system.starts_with(REMOTE_REPLIQ)
                    && (r.workload.starts_with(REMOTE_TPUT) || r.workload.starts_with(REMOTE_LAT))
            })
            .map(|r| r.size)
            .collect();
        if sizes.is_empty() {
            return String::new();
        }
        sizes.sort_unstable();
        sizes.dedup();
        let mut s = String::from(
            "## Remote produce next to NATS JetStream and Redis Streams (this run)\n\n\
             Producers only, each on its own connection, waiting for the server's \
             acknowledgements (repliq: one `repliqd`, asynchronous, no replicas, acknowledged \
             after the local commit; NATS: one server, R1 file stream; Redis: no persistence). \
             Throughput ratios compare the same number of producers.\n\n\
             | goal (issue 21) | size | value | met |\n|---|---:|---:|---|\n",
        );
        let met = |ok: bool| if ok { "yes" } else { "**no**" };
        for &size in &sizes {
            for producers in [1, 4] {
                let tput = |who: &str| {
                    find(REMOTE_TPUT, size, &remote_system(who, producers))
                        .and_then(|r| r.throughput.as_ref())
                        .map(|t| t.msgs_per_sec)
                        .filter(|x| *x > 0.0)
                };
                let Some(ours) = tput(REMOTE_REPLIQ) else {
                    continue;
                };
                for (who, goal) in [(REMOTE_NATS, 2.0), (REMOTE_REDIS, 3.0)] {
                    let name = if who == REMOTE_NATS {
                        "NATS JetStream's"
                    } else {
                        "Redis Streams'"
                    };
                    let value = tput(who).map(|theirs| ours / theirs);
                    let _ = writeln!(
                        s,
                        "| remote msgs/s ≥ {goal}× {name}, {producers} producer{} | {} | {} | {} |",
                        if producers == 1 { "" } else { "s" },
                        fmt_size(size),
                        value.map_or("n/a (not measured)".to_owned(), |x| format!("{x:.2}×")),
                        value.map_or("—", |x| met(x >= goal)),
                    );
                }
            }
            let p99 = |sys: &str| {
                find(REMOTE_LAT, size, sys)
                    .and_then(|r| r.latency.as_ref())
                    .map(|l| l.p99_ns as f64)
            };
            if let Some(a) = p99(REMOTE_REPLIQ) {
                let b = p99(REMOTE_NATS);
                let _ = writeln!(
                    s,
                    "| remote produce → ack p99 ≤ NATS JetStream's publish → ack p99 | {} | {} | {} |",
                    fmt_size(size),
                    b.map_or(format!("{} vs n/a", fmt_ns(a)), |b| format!(
                        "{} vs {}",
                        fmt_ns(a),
                        fmt_ns(b)
                    )),
                    b.map_or("—", |b| met(a <= b)),
                );
            }
        }
        s.push('\n');
        s
    }

    /// Same-run ratios of the async handle's p50 to the synchronous handle's, for enqueue cost
    /// and one-way latency; empty when no async row was measured.
    pub fn async_vs_sync(&self) -> String {
        const ASYNC: [&str; 2] = ["repliq-async-ct", "repliq-async-mt"];
        let mut keys: Vec<(&str, usize)> = self
            .rows
            .iter()
            .filter(|r| {
                ASYNC.contains(&r.system.as_str())
                    && (r.workload == "enqueue" || r.workload.starts_with("oneway@"))
            })
            .map(|r| (r.workload.as_str(), r.size))
            .collect();
        keys.dedup();
        if keys.is_empty() {
            return String::new();
        }
        let mut s = String::from(
            "## Async vs sync handle (this run)\n\n\
             p50 of the async handle (`ReplicatedQueueImpl`, awaited in a tokio task) divided by \
             p50 of the synchronous `JournalQueue` (`repliq` row) of the same run. Enqueue cost: \
             one call, one process (goal ≤ 1.5×). One-way: producer awaits `enqueue_ref`, the \
             reader process awaits `recv()` (woken by repliq's waiter thread), against a \
             synchronous producer and a spinning `read` reader.\n\n\
             | measurement | sync p50 | async current-thread p50 | ratio | async multi-thread p50 | ratio |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        let p50 = |w: &str, size: usize, system: &str| {
            self.row(w, size, system)
                .and_then(|r| r.latency.as_ref())
                .map(|l| l.p50_ns)
        };
        let cell = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| fmt_ns(v as f64));
        for (w, size) in keys {
            let what = match w.strip_prefix("oneway@") {
                Some(rate) => format!("one-way @ {rate} msg/s, {}", fmt_size(size)),
                None => format!("enqueue cost, {} (goal ≤ 1.5×)", fmt_size(size)),
            };
            let sync = p50(w, size, "repliq");
            let _ = write!(s, "| {what} | {} |", cell(sync));
            for a in ASYNC {
                let v = p50(w, size, a);
                let ratio = match (v, sync) {
                    (Some(x), Some(y)) if y > 0 => format!("{:.2}×", x as f64 / y as f64),
                    _ => "—".to_owned(),
                };
                let _ = write!(s, " {} | {ratio} |", cell(v));
            }
            s.push('\n');
        }
        s.push('\n');
        s
    }

    /// The Markdown report.
    pub fn markdown(&self, plots: &[String]) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# repliq benchmark results ({} run)\n", self.mode);
        let _ = writeln!(
            s,
            "Produced by `{}` on {} in {:.0} s.\n",
            self.command, self.started_utc, self.duration_secs
        );
        let _ = writeln!(
            s,
            "Machine: {} · {} cores · Linux {} · producer/consumer pinned to separate cores: {} · \
             load average before/after: {} / {} · concurrent `rustc` processes seen: {} · \
             CPU pressure (PSI, after): {}.\n",
            m.cpu_model,
            m.cores,
            m.kernel,
            if m.pinned { "yes" } else { "no" },
            m.loadavg_before,
            m.loadavg_after,
            m.rustc_seen,
            if m.cpu_pressure.is_empty() {
                "n/a"
            } else {
                &m.cpu_pressure
            }
        );
        let _ = writeln!(
            s,
            "> **Read with care.** This machine has {} shared virtual cores: the producer, the \
             consumer and (for Redis/NATS) the server compete for them with each other and with \
             whatever else runs. Medians and ratios are meaningful; p99 and beyond are mostly \
             scheduler noise here. `× X` columns divide this row by system X: for latency a \
             value below 1 means faster than X, for throughput above 1 means faster than X. \
             One-way latency is measured from the *intended* send time of a fixed-rate schedule \
             (no coordinated omission), with `CLOCK_MONOTONIC`, which all processes share.\n",
            m.cores
        );
        s.push_str(&self.headline());
        s.push_str(&self.replication_cost());
        s.push_str(&self.remote_goals());
        s.push_str(&self.async_vs_sync());
        let _ = writeln!(
            s,
            "## Systems\n\n| system | ran | version / reason |\n|---|---|---|"
        );
        for st in &self.systems {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                st.system,
                if st.ran { "yes" } else { "**skipped**" },
                st.detail.replace('|', "/")
            );
        }
        s.push('\n');
        for ((workload, size), rows) in groups(&self.rows) {
            let _ = writeln!(s, "## {}\n", group_title(&workload, size));
            let bases: Vec<&Row> = RATIO_BASES
                .iter()
                .filter_map(|b| rows.iter().find(|r| r.system == *b).copied())
                .collect();
            let is_lat = rows.iter().any(|r| r.latency.is_some());
            let is_tput = rows.iter().any(|r| r.throughput.is_some());
            let mut head = String::from("| system |");
            let mut rule = String::from("|---|");
            if is_lat {
                head.push_str(" p50 | p90 | p99 | p99.9 | max |");
                rule.push_str("---:|---:|---:|---:|---:|");
            }
            let has_runs = rows.iter().any(|r| r.repeats.is_some());
            if has_runs {
                head.push_str(" runs | p50 min–max | p99 min–max |");
                rule.push_str("---:|---:|---:|");
            }
            let has_mem = rows.iter().any(|r| r.memory.is_some());
            if has_mem {
                head.push_str(" anon RSS consumer / producer Δ |");
                rule.push_str("---:|");
            }
            let has_psi = rows.iter().any(|r| r.psi_cpu_some_pct.is_some());
            if has_psi {
                head.push_str(" CPU PSI |");
                rule.push_str("---:|");
            }
            if is_tput {
                head.push_str(" msgs/s | MB/s |");
                rule.push_str("---:|---:|");
            }
            for b in &bases {
                let _ = write!(head, " × {} |", b.system);
                rule.push_str("---:|");
            }
            head.push_str(" messages | note |");
            rule.push_str("---:|---|");
            let _ = writeln!(s, "{head}\n{rule}");
            for r in &rows {
                let mut line = format!("| {} |", r.system);
                if is_lat {
                    match &r.latency {
                        Some(l) => {
                            for v in [l.p50_ns, l.p90_ns, l.p99_ns, l.p999_ns, l.max_ns] {
                                let _ = write!(line, " {} |", fmt_ns(v as f64));
                            }
                        }
                        None => line.push_str(" | | | | |"),
                    }
                }
                if has_runs {
                    match &r.repeats {
                        Some(x) => {
                            let _ = write!(
                                line,
                                " {} | {}–{} | {}–{} |",
                                x.runs.len(),
                                fmt_ns(x.p50_min_ns as f64),
                                fmt_ns(x.p50_max_ns as f64),
                                fmt_ns(x.p99_min_ns as f64),
                                fmt_ns(x.p99_max_ns as f64)
                            );
                        }
                        None => line.push_str(" 1 | | |"),
                    }
                }
                if has_mem {
                    match &r.memory {
                        Some(m) => {
                            let _ = write!(
                                line,
                                " {} / {} |",
                                fmt_bytes(m.consumer_anon_bytes as f64),
                                fmt_bytes(m.producer_anon_delta_bytes as f64)
                            );
                        }
                        None => line.push_str(" |"),
                    }
                }
                if has_psi {
                    match r.psi_cpu_some_pct {
                        Some(p) => {
                            let _ =
                                write!(line, " {p:.0} %{} |", if r.contended { " ⚠" } else { "" });
                        }
                        None => line.push_str(" |"),
                    }
                }
                if is_tput {
                    match &r.throughput {
                        Some(t) => {
                            let _ = write!(
                                line,
                                " {} | {:.1} |",
                                fmt_rate(t.msgs_per_sec),
                                t.mb_per_sec
                            );
                        }
                        None => line.push_str(" | |"),
                    }
                }
                for b in &bases {
                    // p50 latency where both rows have one, else msgs/s.
                    let ratio = match (&r.latency, &b.latency, &r.throughput, &b.throughput) {
                        (Some(a), Some(c), _, _) if c.p50_ns > 0 => {
                            Some(a.p50_ns as f64 / c.p50_ns as f64)
                        }
                        (_, _, Some(a), Some(c)) if c.msgs_per_sec > 0.0 => {
                            Some(a.msgs_per_sec / c.msgs_per_sec)
                        }
                        _ => None,
                    };
                    match ratio {
                        Some(x) if x >= 10.0 => {
                            let _ = write!(line, " {x:.0} |");
                        }
                        Some(x) if x < 0.01 => {
                            let _ = write!(line, " {x:.4} |");
                        }
                        Some(x) => {
                            let _ = write!(line, " {x:.2} |");
                        }
                        None => line.push_str(" — |"),
                    }
                }
                let _ = writeln!(
                    line,
                    " {} | {} |",
                    r.sent,
                    r.note.clone().unwrap_or_default().replace('|', "/")
                );
                s.push_str(&line);
            }
            if has_runs {
                s.push_str(
                    "\nRepeated rows show the run with the median p99 and the spread of all runs.",
                );
            }
            if has_psi {
                let _ = write!(
                    s,
                    "\nCPU PSI: share of the run's wall time some task waited for a CPU \
                     (`/proc/pressure/cpu` some); ⚠ = a run above {CONTENDED_PCT:.0} %.",
                );
            }
            if has_mem {
                s.push_str(
                    "\nAnon RSS: `RssAnon` of the consumer process at its end, and the growth of \
                     the producer process's `RssAnon` over the run (mapped journal pages excluded).",
                );
            }
            if is_lat && is_tput {
                s.push_str("\nRatios compare p50 latency where both rows have one, else msgs/s.\n");
            } else if is_lat {
                s.push_str("\nRatios compare p50.\n");
            } else {
                s.push_str("\nRatios compare msgs/s.\n");
            }
            s.push('\n');
        }
        if !self.rkyv.is_empty() {
            s.push_str(
                "## Typed byte path (rkyv through repliq's API), one core, ns per operation\n\n",
            );
            s.push_str("| archived size | serialize_into | access (validated) | access_unchecked | deserialize |\n|---:|---:|---:|---:|---:|\n");
            for r in &self.rkyv {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    fmt_size(r.size),
                    r.serialize_into_ns,
                    r.access_ns,
                    r.access_unchecked_ns,
                    r.deserialize_ns
                );
            }
            s.push('\n');
        }
        if !self.skipped.is_empty() {
            s.push_str("## Skipped\n\n| workload | system | reason |\n|---|---|---|\n");
            for k in &self.skipped {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    k.workload,
                    k.system,
                    k.reason.replace('|', "/")
                );
            }
            s.push('\n');
        }
        if !plots.is_empty() {
            s.push_str("## Plots\n\n");
            for p in plots {
                let _ = writeln!(s, "![{p}]({p})\n");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    fn results() -> Results {
        let mut rec = Recorder::new();
        rec.record(100);
        let lat = rec.summary();
        let row = |system: &str, p50: u64| Row {
            workload: "oneway@100k".into(),
            kind: Some(Kind::OneWay { rate: 100_000 }),
            system: system.into(),
            size: 64,
            sent: 10,
            latency: Some(Latency {
                p50_ns: p50,
                ..lat.clone()
            }),
            throughput: None,
            note: None,
            ..Row::default()
        };
        Results {
            mode: "smoke".into(),
            command: "repliq-bench run --smoke".into(),
            started_utc: "now".into(),
            duration_secs: 1.0,
            machine: Machine {
                cpu_model: "cpu".into(),
                cores: 2,
                kernel: "6".into(),
                pinned: true,
                loadavg_before: String::new(),
                loadavg_after: String::new(),
                rustc_seen: 0,
                cpu_pressure: String::new(),
            },
            systems: vec![SystemStatus {
                system: "nats-jetstream".into(),
                ran: false,
                detail: "not installed".into(),
            }],
            rows: vec![row("floor", 100), row("repliq", 150)],
            skipped: vec![Skip {
                workload: "replication".into(),
                system: "repliq".into(),
                reason: "skipped: replication transport not built yet".into(),
            }],
            rkyv: vec![],
        }
    }

    #[test]
    fn remote_goals_compare_same_producer_counts() {
        let mut r = results();
        assert_eq!(r.remote_goals(), "");
        let mut rec = Recorder::new();
        rec.record(100);
        let base = rec.summary();
        let tput = |who: &str, producers: usize, msgs: u64| Row {
            workload: format!("{REMOTE_TPUT}: test"),
            system: remote_system(who, producers),
            size: 64,
            sent: msgs,
            throughput: Some(Throughput::new(msgs, 64, 1_000_000_000)),
            ..Row::default()
        };
        let lat = |system: &str, p99: u64| Row {
            workload: format!("{REMOTE_LAT}@2k: test"),
            system: system.into(),
            size: 64,
            latency: Some(Latency {
                p99_ns: p99,
                ..base.clone()
            }),
            ..Row::default()
        };
        r.rows = vec![
            tput(REMOTE_REPLIQ, 1, 300),
            tput(REMOTE_NATS, 1, 100),
            tput(REMOTE_REDIS, 1, 200),
            tput(REMOTE_REPLIQ, 4, 100),
            tput(REMOTE_NATS, 4, 100),
            lat(&format!("{REMOTE_REPLIQ}, batches of 1"), 2_000),
            lat(&format!("{REMOTE_NATS}, publish → ack"), 1_000),
        ];
        let md = r.remote_goals();
        assert!(
            md.contains("| remote msgs/s ≥ 2× NATS JetStream's, 1 producer | 64 B | 3.00× | yes |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| remote msgs/s ≥ 3× Redis Streams', 1 producer | 64 B | 1.50× | **no** |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| remote msgs/s ≥ 2× NATS JetStream's, 4 producers | 64 B | 1.00× | **no** |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| remote msgs/s ≥ 3× Redis Streams', 4 producers | 64 B | n/a (not measured) | — |"
            ),
            "{md}"
        );
        assert!(md.contains("| 64 B | 2.0 µs vs 1.0 µs | **no** |"), "{md}");
    }

    #[test]
    fn markdown_has_ratios_and_skips() {
        let md = results().markdown(&["a.png".into()]);
        assert!(md.contains("× floor"), "{md}");
        assert!(md.contains("| repliq | 150 ns"), "{md}");
        assert!(md.contains(" 1.50 |"), "{md}");
        assert!(md.contains("replication transport not built yet"));
        assert!(md.contains("**skipped**"));
        assert!(md.contains("![a.png](a.png)"));
    }

    #[test]
    fn async_vs_sync_ratios() {
        let mut r = results();
        assert_eq!(r.async_vs_sync(), "");
        let base = r.rows[0].clone();
        for (workload, system, p50) in [
            ("enqueue", "repliq", 100),
            ("enqueue", "repliq-async-ct", 130),
            ("oneway@100k", "repliq-async-mt", 300),
        ] {
            let mut row = base.clone();
            row.workload = workload.into();
            row.system = system.into();
            if let Some(l) = &mut row.latency {
                l.p50_ns = p50;
            }
            r.rows.push(row);
        }
        let md = r.async_vs_sync();
        assert!(
            md.contains("| enqueue cost, 64 B (goal ≤ 1.5×) | 100 ns | 130 ns | 1.30× | — | — |"),
            "{md}"
        );
        assert!(
            md.contains("| one-way @ 100k msg/s, 64 B | 150 ns | — | — | 300 ns | 2.00× |"),
            "{md}"
        );
        assert!(r.markdown(&[]).contains("## Async vs sync handle"));
    }

    #[test]
    fn json_round_trips() {
        let r = results();
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.rows.len(), 2);
    }

    #[test]
    fn repeats_pick_the_median_p99_run() {
        let run = |p50, p99| RunSummary {
            p50_ns: p50,
            p99_ns: p99,
            max_ns: p99,
            psi_cpu_some_pct: Some(10.0),
        };
        let r = Repeats::of(vec![run(5, 900), run(3, 100), run(4, 300)]).unwrap();
        assert_eq!(r.median_run, 2);
        assert_eq!((r.p50_min_ns, r.p50_max_ns), (3, 5));
        assert_eq!((r.p99_min_ns, r.p99_max_ns), (100, 900));
        assert!(Repeats::of(Vec::new()).is_none());
        let mut res = results();
        res.rows[1].repeats = Some(r);
        res.rows[1].psi_cpu_some_pct = Some(40.0);
        res.rows[1].contended = true;
        let md = res.markdown(&[]);
        assert!(md.contains("| 3 | 3 ns–5 ns | 100 ns–900 ns |"), "{md}");
        assert!(md.contains("40 % ⚠"), "{md}");
    }

    #[test]
    fn units() {
        assert_eq!(fmt_ns(999.0), "999 ns");
        assert_eq!(fmt_ns(1500.0), "1.5 µs");
        assert_eq!(fmt_rate(2_500_000.0), "2.50 M");
    }
}
