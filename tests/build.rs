//! Generates the message types of every schema in `../schemas/` (used by `tests/codegen_*.rs`),
//! and the fingerprints that `repliq-codegen` computes for them without compiling them
//! (`codegen_fingerprints.rs`), so the tests can hold them against what the macro computes.

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
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("codegen_fingerprints.rs");
    std::fs::write(out, table)?;
    Ok(())
}
