//! `repliq-check`: checks a history against the final journals (`docs/CHECKER.md`).
//!
//! ```text
//! repliq-check --primary NODE=CAT [--replica NODE=CAT]... [--drained CONSUMER]... [--max N] HISTORY...
//! ```
//!
//! `HISTORY`: history files (JSON lines; several are read as one history). `CAT`: the output of
//! `repliq cat DIR` on that node, the replicas' taken before the primary's. `CONSUMER`: a consumer
//! that read the primary's journal to its end after the last write (checked to have received
//! every record of it). Prints every anomaly
//! (at most `--max` per kind, default 10) with the offending operations, then one summary line
//! `verdict valid|INVALID ...`. Exit code 0: valid; 1: anomalies; 2: bad input or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use repliq_check::{Journal, check_with, history};

const USAGE: &str = "usage: repliq-check --primary NODE=CAT [--replica NODE=CAT]... [--drained CONSUMER]... [--max N] HISTORY...";

struct Args {
    primary: (String, PathBuf),
    replicas: Vec<(String, PathBuf)>,
    histories: Vec<PathBuf>,
    drained: Vec<String>,
    max: usize,
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
    let report = check_with(&ops, &primary, &replicas, &args.drained)?;
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
