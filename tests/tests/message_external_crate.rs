//! A crate outside the workspace, with only `repliq` as a dependency, compiles, round-trips a
//! message and computes the same fingerprint as the identical definition in this workspace.

use std::path::Path;
use std::process::Command;

use repliq::Fingerprint;

#[test]
fn crate_depending_only_on_repliq_round_trips() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/external-crate");
    // A target dir of its own: the outer `cargo test` holds the lock on the workspace's.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/external-crate-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "fixture crate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("{:#018x}", repliq_tests::Order::FINGERPRINT),
        "the twin in another crate must have the same fingerprint"
    );
}
