//! Generates the message types of every schema in `../schemas/` (used by `tests/codegen_*.rs`),
//! and the fingerprints that `repliq-codegen` computes for them without compiling them
//! (`codegen_fingerprints.rs`), so the tests can hold them against what the macro computes; and
//! the golden-file fixtures of `repliq-codegen` (into `fixtures/<case>/`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut schemas: Vec<PathBuf> = std::fs::read_dir("../schemas")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    schemas.retain(|p| p.extension().is_some_and(|e| e == "rq"));
    schemas.sort();
    // A new schema file must trigger a rebuild too, not only a changed one.
    println!("cargo:rerun-if-changed=../schemas");

    let builder = repliq_codegen::configure().include_file("schemas.rs");
    builder.compile(&schemas)?;

    let mut table = String::from(
        "/// `(NAME, FINGERPRINT)` of every schema type, as repliq-codegen computes them.\n",
    );
    table.push_str("pub const CODEGEN_FINGERPRINTS: &[(&str, u64)] = &[\n");
    for t in builder.check(&schemas)? {
        table.push_str(&format!("    ({:?}, {:#018x}),\n", t.name, t.fingerprint));
    }
    table.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("codegen_fingerprints.rs"), table)?;

    // The golden-file fixtures of repliq-codegen must compile too (`tests/codegen_fixtures.rs`).
    let golden = PathBuf::from("../repliq-codegen/tests/golden");
    println!("cargo:rerun-if-changed={}", golden.display());
    for case in ["scalars", "enums", "imports", "hygiene"] {
        let dir = golden.join(case);
        let mut files = vec![];
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "rq") {
                files.push(path);
            }
        }
        files.sort();
        repliq_codegen::configure()
            .include(&dir)
            .include_file("mod.rs")
            .out_dir(out_dir.join("fixtures").join(case))
            .compile(&files)?;
    }
    Ok(())
}
