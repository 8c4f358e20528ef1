//! Golden files: each directory under `tests/golden/` holds schema files and, next to them, the
//! expected generated source of every output file (`<package>_expected.rs`, `mod_expected.rs`
//! for the include file). The `schemas` case covers the repository's `schemas/` directory.
//!
//! Any drift fails. After an intended change, regenerate with `REPLIQ_BLESS=1 cargo test -p
//! repliq-codegen --test golden` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

fn bless() -> bool {
    std::env::var_os("REPLIQ_BLESS").is_some_and(|v| v != "0")
}

/// The `.rq` files under `dir`, recursively, sorted.
fn schemas(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read fixture dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(schemas(&path));
        } else if path.extension().is_some_and(|e| e == "rq") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn expected_name(generated: &str) -> String {
    format!("{}_expected.rs", generated.trim_end_matches(".rs"))
}

/// Generates `schema_dir` and compares every output with `<expected_dir>/<name>_expected.rs`.
fn check_case(schema_dir: &Path, expected_dir: &Path) -> Vec<String> {
    let files = repliq_codegen::configure()
        .include_file("mod.rs")
        .generate_files(&schemas(schema_dir))
        .unwrap_or_else(|e| panic!("{} does not generate:\n{e}", schema_dir.display()));
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    for file in &files {
        let path = expected_dir.join(expected_name(&file.name));
        wanted.push(path.clone());
        if bless() {
            fs::write(&path, &file.contents).expect("write expected file");
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(expected) if expected == file.contents => {}
            Ok(expected) => {
                let line = expected
                    .lines()
                    .zip(file.contents.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| expected.lines().count().min(file.contents.lines().count()))
                    + 1;
                problems.push(format!(
                    "{} differs from the generated `{}` (first at line {line}):\n{}",
                    path.display(),
                    file.name,
                    file.contents
                ));
            }
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    // An expected file that nothing generates any more is drift too.
    for entry in fs::read_dir(expected_dir).expect("read expected dir") {
        let path = entry.expect("dir entry").path();
        let is_expected = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("_expected.rs"));
        if is_expected && !wanted.contains(&path) {
            if bless() {
                fs::remove_file(&path).expect("remove stale expected file");
            } else {
                problems.push(format!("{} is stale: nothing generates it", path.display()));
            }
        }
    }
    problems
}

fn run(case: &str, schema_dir: &str) {
    let expected_dir = Path::new("tests/golden").join(case);
    fs::create_dir_all(&expected_dir).expect("create expected dir");
    let problems = check_case(Path::new(schema_dir), &expected_dir);
    assert!(
        problems.is_empty(),
        "{}\n\nIf the change is intended, run `REPLIQ_BLESS=1 cargo test -p repliq-codegen --test golden` and review the diff.",
        problems.join("\n\n")
    );
}

#[test]
fn golden_scalars() {
    run("scalars", "tests/golden/scalars");
}

#[test]
fn golden_enums() {
    run("enums", "tests/golden/enums");
}

#[test]
fn golden_imports() {
    run("imports", "tests/golden/imports");
}

#[test]
fn golden_hygiene() {
    run("hygiene", "tests/golden/hygiene");
}

#[test]
fn golden_repository_schemas() {
    run("schemas", "../schemas");
}
