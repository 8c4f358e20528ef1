//! Diagnostics: one fixture per error kind under `tests/diagnostics/`, each next to the expected
//! rendered output (`<case>.stderr`: `file:line:col`, source line, caret, every error of the
//! run). A directory is a multi-file case whose root is its first `.rq` file.
//!
//! Regenerate the `.stderr` files with `REPLIQ_BLESS=1 cargo test -p repliq-codegen --test
//! diagnostics` after an intended change, and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use repliq_codegen::Error;

const DIR: &str = "tests/diagnostics";

fn root_of(case: &str) -> PathBuf {
    let file = Path::new(DIR).join(format!("{case}.rq"));
    if file.exists() {
        return file;
    }
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(DIR).join(case))
        .expect("case directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rq"))
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .expect("a .rq file in the case directory")
}

/// Runs the case, compares the rendered errors with `<case>.stderr` and returns the one-line
/// summaries (`path:line:col: message`).
fn run(case: &str) -> Vec<String> {
    let root = root_of(case);
    let diagnostics = match repliq_codegen::configure().generate_files(&[&root]) {
        Err(Error::Schema(d)) => d,
        Err(other) => panic!("{case}: expected schema errors, got: {other}"),
        Ok(_) => panic!("{case}: expected schema errors, but it generated"),
    };
    let rendered = format!("{diagnostics}\n");
    let expected_path = Path::new(DIR).join(format!("{case}.stderr"));
    if std::env::var_os("REPLIQ_BLESS").is_some_and(|v| v != "0") {
        fs::write(&expected_path, &rendered).expect("write .stderr");
    } else {
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing", expected_path.display()));
        assert_eq!(
            rendered,
            expected,
            "{case}: the rendered diagnostics differ from {} (REPLIQ_BLESS=1 regenerates)",
            expected_path.display()
        );
    }
    diagnostics.summaries()
}

fn assert_summaries(case: &str, expected: &[&str]) {
    assert_eq!(run(case), expected, "{case}");
}

#[test]
fn syntax_errors_are_all_reported_with_recovery() {
    assert_summaries(
        "syntax",
        &[
            "tests/diagnostics/syntax.rq:6:5: expected `,` or `}` after the field",
            "tests/diagnostics/syntax.rq:9:24: unexpected end of input, expected `,` or `>` after the type argument",
            "tests/diagnostics/syntax.rq:15:11: expected `{`, `(` or `;` after the message name",
        ],
    );
}

#[test]
fn lexer_errors_name_the_problem() {
    assert_summaries(
        "lexer",
        &["tests/diagnostics/lexer.rq:5:11: unterminated string literal"],
    );
}

#[test]
fn unknown_types() {
    assert_summaries(
        "unknown_type",
        &[
            "tests/diagnostics/unknown_type.rq:4:11: unknown type `Sid`",
            "tests/diagnostics/unknown_type.rq:5:12: unknown type `market.Venue`",
            "tests/diagnostics/unknown_type.rq:6:18: unknown type `Price`",
        ],
    );
}

#[test]
fn duplicates_of_fields_variants_and_types() {
    assert_summaries(
        "duplicate",
        &[
            "tests/diagnostics/duplicate.rq:6:5: the field `price` is defined more than once",
            "tests/diagnostics/duplicate.rq:12:5: the variant `Buy` is defined more than once",
            "tests/diagnostics/duplicate.rq:15:9: the type `diag.Tick` is defined more than once",
        ],
    );
}

#[test]
fn import_cycles() {
    assert_summaries(
        "import_cycle",
        &[
            "tests/diagnostics/import_cycle/b.rq:3:1: import cycle: tests/diagnostics/import_cycle/a.rq -> tests/diagnostics/import_cycle/b.rq -> tests/diagnostics/import_cycle/a.rq",
        ],
    );
}

#[test]
fn missing_imports_are_not_transitive() {
    let summaries = run("missing_import");
    assert_eq!(
        summaries,
        [
            "tests/diagnostics/missing_import/main.rq:6:11: `diag.side.Side` is defined in `tests/diagnostics/missing_import/side.rq`, which this file does not import"
        ]
    );
    let rendered = fs::read_to_string("tests/diagnostics/missing_import.stderr").expect("stderr");
    assert!(
        rendered.contains(r#"help: add `import "side.rq";` to this file"#),
        "{rendered}"
    );
}

#[test]
fn imports_that_do_not_exist() {
    assert_summaries(
        "import_not_found",
        &[
            "tests/diagnostics/import_not_found.rq:3:1: cannot find imported file `does/not/exist.rq`",
        ],
    );
}

#[test]
fn reserved_words() {
    assert_summaries(
        "reserved_word",
        &[
            "tests/diagnostics/reserved_word.rq:3:9: `string` is reserved and cannot be a type name",
            "tests/diagnostics/reserved_word.rq:6:5: `self` is reserved and cannot be a field name",
            "tests/diagnostics/reserved_word.rq:10:6: `Self` is reserved and cannot be a type name",
        ],
    );
}

#[test]
fn unsupported_constructs() {
    assert_summaries(
        "unsupported",
        &[
            "tests/diagnostics/unsupported.rq:3:1: `struct` items are not supported in schemas; write `message` for a struct",
            "tests/diagnostics/unsupported.rq:5:1: attributes are not supported in schemas (only `///` and `//!` doc comments)",
            "tests/diagnostics/unsupported.rq:6:13: generic messages and enums are not supported",
            "tests/diagnostics/unsupported.rq:7:11: tuple types are not supported in schemas; define a message",
            "tests/diagnostics/unsupported.rq:8:19: unsupported map key type",
            "tests/diagnostics/unsupported.rq:9:5: fields are always `pub` in generated code; remove `pub`",
            "tests/diagnostics/unsupported.rq:12:18: explicit discriminants are not supported: variants are numbered in order",
            "tests/diagnostics/unsupported.rq:12:30: explicit discriminants are not supported: variants are numbered in order",
            "tests/diagnostics/unsupported.rq:14:6: the enum `Never` has no variants",
        ],
    );
}

#[test]
fn recursive_types() {
    assert_summaries(
        "recursive_type",
        &[
            "tests/diagnostics/recursive_type.rq:3:9: recursive type: diag.Node -> diag.Node",
            "tests/diagnostics/recursive_type.rq:8:9: recursive type: diag.Ping -> diag.Pong -> diag.Ping",
        ],
    );
}

#[test]
fn missing_package() {
    assert_summaries(
        "missing_package",
        &["tests/diagnostics/missing_package.rq:1:1: missing `package` declaration"],
    );
}

#[test]
fn wrong_number_of_type_arguments() {
    assert_summaries(
        "wrong_arity",
        &[
            "tests/diagnostics/wrong_arity.rq:4:8: `list` takes 1 type argument, but 2 were given",
            "tests/diagnostics/wrong_arity.rq:5:8: `map` takes 2 type arguments, but 1 was given",
            "tests/diagnostics/wrong_arity.rq:6:8: `u32` takes no type arguments",
            "tests/diagnostics/wrong_arity.rq:7:8: `optional` takes 1 type argument, but 0 were given",
        ],
    );
}

#[test]
fn an_unreadable_root_is_an_error_without_location() {
    let err = repliq_codegen::configure()
        .generate_files(&["tests/diagnostics/no_such_file.rq"])
        .unwrap_err();
    let Error::Schema(d) = err else {
        panic!("expected schema errors")
    };
    assert_eq!(d.len(), 1);
    assert!(
        d.summaries()[0].starts_with("cannot read `tests/diagnostics/no_such_file.rq`"),
        "{:?}",
        d.summaries()
    );
}

#[test]
fn every_fixture_has_a_test() {
    let mut cases: Vec<String> = fs::read_dir(DIR)
        .expect("diagnostics dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rq"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    cases.sort();
    let source = include_str!("diagnostics.rs");
    for case in cases {
        assert!(
            source.contains(&format!("\"{case}\"")),
            "tests/diagnostics/{case} has no test in tests/diagnostics.rs"
        );
    }
}
