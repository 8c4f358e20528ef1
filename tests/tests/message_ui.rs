//! UI tests of `#[repliq::message]`: each failing input pins its diagnostics in a `.stderr` file
//! (regenerate with `TRYBUILD=overwrite` after a deliberate change, and review the diff). The
//! `.stderr` files depend on the rustc version; they were written with the workspace's pinned
//! toolchain (`rust-version` in the root `Cargo.toml`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
