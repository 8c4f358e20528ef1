//! The `repliq-codegen` binary (built with `--features cli`): exit codes and outputs.
#![cfg(feature = "cli")]

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repliq-codegen"))
        .args(args)
        .output()
        .expect("run repliq-codegen")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn generate_writes_one_file_per_package_and_the_include_file() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8 path");
    let result = run(&[
        "generate",
        "--out-dir",
        dir,
        "--include-file",
        "all.rs",
        "../schemas/orders.rq",
    ]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    // orders.rq imports market.rq, so both packages are generated.
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .expect("read out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["all.rs", "market.rs", "orders.rs"]);
    let orders = std::fs::read_to_string(out.path().join("orders.rs")).expect("orders.rs");
    assert!(orders.contains(r#"#[::repliq::message(name = "orders.NewOrder")]"#));
    assert!(orders.contains("pub side: super::market::Side,"));
}

#[test]
fn check_lists_types_with_fingerprints() {
    let result = run(&["check", "../schemas/market.rq"]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(
        lines[0].starts_with("0x") && lines[0].ends_with("enum     market.Side"),
        "{stdout}"
    );
}

#[test]
fn check_reports_errors_with_exit_code_2() {
    let result = run(&["check", "tests/diagnostics/unknown_type.rq"]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains("error[unknown-type]: unknown type `Sid`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tests/diagnostics/unknown_type.rq:4:11"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 3 errors in schema files"),
        "{stderr}"
    );
}

#[test]
fn compat_exit_codes() {
    let same = run(&["compat", "../schemas/market.rq", "../schemas/market.rq"]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));

    let dir = tempfile::tempdir().expect("tempdir");
    let new = dir.path().join("market.rq");
    let old = std::fs::read_to_string("../schemas/market.rq").expect("market.rq");
    std::fs::write(&new, old.replace("bid_size: u32", "bid_size: u64")).expect("write");
    let changed = run(&[
        "compat",
        "../schemas/market.rq",
        new.to_str().expect("utf-8"),
    ]);
    assert_eq!(changed.status.code(), Some(1));
    let stdout = text(&changed.stdout);
    assert!(
        stdout.contains("market.Tick: field `bid_size` changed type from `u32` to `u64`"),
        "{stdout}"
    );
}
