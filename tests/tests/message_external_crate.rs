//! A crate outside the workspace, with only `repliq` as a dependency, compiles, round-trips a
//! message and computes the same fingerprint as the identical definition in this workspace.

use repliq::Fingerprint;

#[test]
fn crate_depending_only_on_repliq_round_trips() {
    let (out, _) = repliq_tests::cargo_on_fixture("run", "external-crate");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("{:#018x}", repliq_tests::Order::FINGERPRINT),
        "the twin in another crate must have the same fingerprint"
    );
}
