//! `repliq-check`: checks a history against the final journals (`docs/CHECKER.md`).
//!
//! ```text
//! repliq-check --primary NODE=CAT [--replica NODE=CAT]... [--drained CONSUMER]... [--max N]
//!     [--asynchronous] HISTORY...
//! ```
//!
//! `HISTORY`: history files (JSON lines; several are read as one history). `CAT`: the output of
//! `repliq cat DIR` on that node, the replicas' taken before the primary's. `--asynchronous`: the
//! queue replicates asynchronously, so acknowledged records lost in a failover are counted
//! (`lost-unreplicated`), not anomalies. `CONSUMER`: a consumer
//! that read the primary's journal to its end after the last write (checked to have received
//! every record of it). Prints every anomaly
//! (at most `--max` per kind, default 10) with the offending operations, then one summary line
//! `verdict valid|INVALID ...`. Exit code 0: valid; 1: anomalies; 2: bad input or usage.
//!
//! ```text
//! repliq-check simulate [--seeds A..B] [--seed N]... [--schedule '[2.1s kill primary 3.0s, ...]']
//!     [--duration TICKS] [--keepalive TICKS] [--required-acks K] [--election next-seq|epoch-then-next-seq]
//!     [--bug ack-before-replicas|accept-stale-frames] [--overlap] [--minimize] [--keep DIR] [--verbose]
//! ```
//!
//! Runs the in-process simulation (`repliq_check::sim`) for each seed, with the seed's random
//! faults or the `--schedule` given (in the container scheduler's format), checks each run with
//! the same checker, and prints one line per seed: its schedule and verdict. A failing seed is
//! printed with its anomalies and what happened; `--minimize` shrinks its schedule to a minimal
//! failing one. `--keep DIR` writes each failing run's history and journals there, as the files
//! `repliq-check` reads. Exit code 0: every seed valid; 1: one failed; 2: usage.

use std::path::PathBuf;
use std::process::ExitCode;

use repliq_check::{Journal, check_with, history};

const USAGE: &str = "usage: repliq-check --primary NODE=CAT [--replica NODE=CAT]... [--drained CONSUMER]... [--max N] [--asynchronous] HISTORY...\n       repliq-check simulate --help";

struct Args {
    primary: (String, PathBuf),
    replicas: Vec<(String, PathBuf)>,
    histories: Vec<PathBuf>,
    drained: Vec<String>,
    max: usize,
    asynchronous: bool,
}

fn node_file(flag: &str, value: Option<String>) -> Result<(String, PathBuf), String> {
    let value = value.ok_or_else(|| format!("{flag} needs NODE=FILE"))?;
    let (node, file) = value
        .split_once('=')
        .ok_or_else(|| format!("{flag} {value}: expected NODE=FILE"))?;
    Ok((node.to_owned(), PathBuf::from(file)))
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut primary = None;
    let mut replicas = Vec::new();
    let mut histories = Vec::new();
    let mut drained = Vec::new();
    let mut max = 10;
    let mut asynchronous = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--primary" => primary = Some(node_file("--primary", it.next())?),
            "--replica" => replicas.push(node_file("--replica", it.next())?),
            "--drained" => drained.push(it.next().ok_or("--drained needs a consumer name")?),
            "--max" => {
                let v = it.next().ok_or("--max needs a number")?;
                max = v.parse().map_err(|e| format!("--max {v}: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            "--asynchronous" => asynchronous = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => histories.push(PathBuf::from(a)),
        }
    }
    let primary = primary.ok_or("--primary is required")?;
    if histories.is_empty() {
        return Err("no history file".to_owned());
    }
    Ok(Args {
        primary,
        replicas,
        histories,
        drained,
        max,
        asynchronous,
    })
}

fn run(args: &Args) -> Result<bool, repliq_check::Error> {
    let mut ops = Vec::new();
    for h in &args.histories {
        ops.extend(history::read(h)?);
    }
    // Replicas first: the order the files should have been taken in.
    let replicas = args
        .replicas
        .iter()
        .map(|(n, f)| Journal::read(n, f))
        .collect::<Result<Vec<_>, _>>()?;
    let primary = Journal::read(&args.primary.0, &args.primary.1)?;
    let mut report = check_with(&ops, &primary, &replicas, &args.drained)?;
    if args.asynchronous {
        report = report.for_asynchronous_queue();
    }
    let mut shown = std::collections::HashMap::<&str, usize>::new();
    for a in &report.anomalies {
        let n = shown.entry(a.kind()).or_default();
        *n += 1;
        if *n <= args.max {
            println!("{a}");
        }
    }
    for (kind, n) in report.by_kind() {
        if n > args.max {
            println!("{kind}: {} more not shown", n - args.max);
        }
    }
    println!("{}", report.summary());
    Ok(report.valid())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("simulate") {
        return simulate::main(std::env::args().skip(2));
    }
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("repliq-check: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("repliq-check: {e}");
            ExitCode::from(2)
        }
    }
}

mod simulate {
    /// A line on stdout; a closed pipe (`| head`) ends the output, not the program with a panic.
    macro_rules! out {
        ($($arg:tt)*) => {{
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), $($arg)*);
        }};
    }

    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use repliq_check::sim::{self, Bug, Config, ElectionRule, Fault};

    const USAGE: &str = "usage: repliq-check simulate [--seeds A..B] [--seed N]... [--schedule SCHEDULE] [--duration TICKS] [--keepalive TICKS] [--required-acks K] [--election next-seq|epoch-then-next-seq] [--bug ack-before-replicas|accept-stale-frames] [--overlap] [--minimize] [--keep DIR] [--verbose]";

    struct Args {
        seeds: Vec<u64>,
        schedule: Option<Vec<Fault>>,
        config: Config,
        minimize: bool,
        keep: Option<PathBuf>,
        verbose: bool,
    }

    fn number(flag: &str, v: Option<String>) -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a number"))?;
        v.parse().map_err(|e| format!("{flag} {v}: {e}"))
    }

    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            seeds: Vec::new(),
            schedule: None,
            config: Config::default(),
            minimize: false,
            keep: None,
            verbose: false,
        };
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--seeds" => {
                    let v = it.next().ok_or("--seeds needs A..B")?;
                    let (lo, hi) = v
                        .split_once("..")
                        .ok_or_else(|| format!("--seeds {v}: expected A..B"))?;
                    let lo: u64 = lo.parse().map_err(|e| format!("--seeds {v}: {e}"))?;
                    let hi: u64 = hi.parse().map_err(|e| format!("--seeds {v}: {e}"))?;
                    a.seeds.extend(lo..=hi);
                }
                "--seed" => a.seeds.push(number("--seed", it.next())?),
                "--schedule" => {
                    let v = it.next().ok_or("--schedule needs a schedule")?;
                    a.schedule = Some(sim::parse_schedule(&v)?);
                }
                "--duration" => a.config.duration = number("--duration", it.next())?,
                "--keepalive" => a.config.keepalive = number("--keepalive", it.next())?,
                "--required-acks" => {
                    let k = number("--required-acks", it.next())?;
                    a.config.required_acks = usize::try_from(k)
                        .ok()
                        .filter(|k| (1..=2).contains(k))
                        .ok_or("--required-acks: 1 or 2 (of the two replicas)")?;
                }
                "--election" => {
                    a.config.election = match it.next().as_deref() {
                        Some("next-seq") => ElectionRule::NextSeq,
                        Some("epoch-then-next-seq") => ElectionRule::EpochThenNextSeq,
                        other => {
                            return Err(format!(
                                "--election {other:?}: next-seq or epoch-then-next-seq"
                            ));
                        }
                    }
                }
                "--bug" => {
                    let v = it.next().ok_or("--bug needs a name")?;
                    a.config.bug =
                        Some(Bug::from_name(&v).ok_or_else(|| format!("--bug {v}: unknown"))?);
                }
                "--minimize" => a.minimize = true,
                "--overlap" => a.config.overlap = true,
                "--keep" => {
                    a.keep = Some(PathBuf::from(it.next().ok_or("--keep needs a directory")?))
                }
                "--verbose" => a.verbose = true,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if a.seeds.is_empty() {
            a.seeds.push(1);
        }
        Ok(a)
    }

    fn keep(dir: &Path, o: &sim::Outcome) -> std::io::Result<()> {
        let d = dir.join(format!("seed-{}", o.seed));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("history.jsonl"), &o.history)?;
        std::fs::write(d.join(format!("final-{}.jsonl", o.primary.0)), &o.primary.1)?;
        let mut cmd = format!("repliq-check --primary {0}=final-{0}.jsonl", o.primary.0);
        for (n, text) in &o.replicas {
            std::fs::write(d.join(format!("final-{n}.jsonl")), text)?;
            cmd += &format!(" --replica {n}=final-{n}.jsonl");
        }
        cmd += " history.jsonl\n";
        std::fs::write(d.join("check.sh"), cmd)?;
        std::fs::write(
            d.join("schedule.txt"),
            format!(
                "{}\n{}\n",
                sim::format_schedule(&o.faults),
                o.events.join("\n")
            ),
        )
    }

    fn run(a: &Args) -> Result<bool, repliq_check::Error> {
        let mut all_valid = true;
        let mut failed = Vec::new();
        for &seed in &a.seeds {
            let faults = match &a.schedule {
                Some(f) => f.clone(),
                None => {
                    sim::draw_schedule(seed, a.config.duration, a.config.lease, a.config.overlap)
                }
            };
            let (o, v) = sim::run_and_check(seed, &faults, &a.config)?;
            let converged = o.converged_in.map_or("did not converge".to_owned(), |t| {
                format!("converged in {t} ticks")
            });
            out!(
                "seed {seed} schedule {} elections {} moved-aside {} {converged} {}{}",
                sim::format_schedule(&faults),
                o.elections,
                o.moved_aside,
                v.report.summary(),
                if v.converged { "" } else { " not-converged" }
            );
            if a.verbose || !v.valid() {
                for an in v.report.anomalies.iter().take(5) {
                    out!("{an}");
                }
                for e in &o.events {
                    out!("  {e}");
                }
            }
            if v.valid() {
                continue;
            }
            all_valid = false;
            failed.push(seed);
            if let Some(dir) = &a.keep
                && let Err(e) = keep(dir, &o)
            {
                eprintln!("repliq-check simulate: --keep {}: {e}", dir.display());
            }
            if a.minimize {
                let small = sim::minimize(seed, &faults, &a.config, 400)?;
                let (so, sv) = sim::run_and_check(seed, &small, &a.config)?;
                out!(
                    "seed {seed} minimized {} -> {} faults: {} {}",
                    faults.len(),
                    small.len(),
                    sim::format_schedule(&small),
                    sv.report.summary()
                );
                for an in sv.report.anomalies.iter().take(3) {
                    out!("{an}");
                }
                for e in &so.events {
                    out!("  {e}");
                }
                out!(
                    "replay: repliq-check simulate --seed {seed} --schedule '{}'",
                    sim::format_schedule(&small)
                );
            }
        }
        out!(
            "seeds {} valid {} failed {failed:?}",
            a.seeds.len(),
            a.seeds.len() - failed.len()
        );
        Ok(all_valid)
    }

    pub(super) fn main(args: impl Iterator<Item = String>) -> ExitCode {
        let a = match parse(args) {
            Ok(a) => a,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("repliq-check simulate: {e}");
                }
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        match run(&a) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!(
                    "repliq-check simulate: the simulation wrote what the checker refuses: {e}"
                );
                ExitCode::from(2)
            }
        }
    }
}
