//! UI tests of `#[repliq::message]`: each failing input pins its diagnostics in a `.stderr` file
//! (regenerate with `TRYBUILD=overwrite` after a deliberate change, and review the diff). The
//! `.stderr` files depend on the rustc version; they were written with rustc 1.95.0, the minimum
//! the workspace supports (`rust-version` in the root `Cargo.toml`, a minimum, not a pinned
//! toolchain): another rustc may word a diagnostic differently. `unarchivable_field` and
//! `nested_enum_field` pin the order too: the "cannot be a field of a repliq message" error,
//! on the field's type, comes before the derives' trait-bound errors.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
