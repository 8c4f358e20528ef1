//! Runs the driver in smoke mode on the systems that need no server (floor, crossbeam,
//! repliq, repliq's async handle) and checks that it writes a report. No timing is asserted.

use std::process::Command;

#[test]
fn smoke_run_writes_json_and_markdown() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_repliq-bench"))
        .args([
            "run",
            "--smoke",
            "--no-plots",
            "--only",
            "floor,crossbeam,repliq",
            "--out",
        ])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let rows = json["rows"].as_array().unwrap();
    let has = |workload: &str, system: &str| {
        rows.iter()
            .any(|r| r["workload"] == workload && r["system"] == system)
    };
    for system in ["floor", "crossbeam", "repliq", "repliq-unchecked"] {
        assert!(has("pingpong", system), "no ping-pong row for {system}");
        assert!(has("oneway@10k", system), "no one-way row for {system}");
        assert!(has("throughput", system), "no throughput row for {system}");
    }
    for system in ["repliq-async-ct", "repliq-async-mt"] {
        assert!(has("oneway@10k", system), "no one-way row for {system}");
        assert!(has("throughput", system), "no throughput row for {system}");
        assert!(has("enqueue", system), "no enqueue-cost row for {system}");
    }
    assert!(has("enqueue", "repliq"), "no synchronous enqueue-cost row");
    assert!(rows.iter().any(|r| r["workload"] == "durability"));
    assert!(rows.iter().any(|r| r["workload"] == "recovery"));
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("× floor"));
    assert!(md.contains("## Async vs sync handle"), "{md}");
    assert!(md.contains("| raw tonic |"), "{md}");
    assert!(rows.iter().any(|r| {
        r["workload"]
            .as_str()
            .is_some_and(|w| w.starts_with("replication"))
    }));
    // The cost rows: the CPU of each part was measured and the bytes were acknowledged.
    let cost = |prefix: &str, system: &str| {
        rows.iter()
            .find(|r| {
                r["workload"]
                    .as_str()
                    .is_some_and(|w| w.starts_with(prefix))
                    && r["system"].as_str().is_some_and(|s| s.starts_with(system))
            })
            .unwrap_or_else(|| panic!("no {prefix} row for {system}"))["cpu"]
            .clone()
    };
    for (prefix, system, parts) in [
        ("repl-cost", "repliq catch-up", 2),
        ("repl-cost", "raw tonic stream", 2),
        ("repl-r3", "repliq sync", 3),
        ("repl-r3", "repliq async", 3),
    ] {
        let c = cost(prefix, system);
        assert!(c["bytes"].as_u64().unwrap_or(0) > 0, "{system}: {c}");
        let p = c["parts"].as_array().unwrap();
        assert_eq!(p.len(), parts, "{system}: {c}");
        let total: u64 = p
            .iter()
            .map(|x| x[1]["user_ns"].as_u64().unwrap() + x[1]["sys_ns"].as_u64().unwrap())
            .sum();
        assert!(total > 0, "{system}: no CPU time measured: {c}");
    }
    assert!(md.contains("## Replication cost"), "{md}");
}

#[test]
fn report_rerenders_from_json() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_repliq-bench"))
        .args(["run", "--smoke", "--no-plots", "--only", "floor", "--out"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(run.success());
    std::fs::remove_file(out.path().join("results.md")).unwrap();
    let report = Command::new(env!("CARGO_BIN_EXE_repliq-bench"))
        .args(["report", "--dir"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(report.success());
    assert!(out.path().join("results.md").exists());
}
