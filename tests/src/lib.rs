//! Shared helpers and fixture types for repliq's cross-crate tests.

pub mod cluster;
pub mod kitchen_sink;

/// A message defined in this crate; `tests/message_fingerprint.rs` defines an identical twin in
/// another crate and checks that both have the same fingerprint.
#[repliq::message(name = "fixture.Order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Client order id.
    pub id: u64,
    /// Instrument.
    pub symbol: String,
    /// Limit price in ticks; `None` for a market order.
    pub price: Option<i64>,
    /// Quantities per venue.
    pub legs: Vec<(u32, u64)>,
}

/// A 16-byte aligned scratch slot for serializer tests.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct AlignedSlot<const N: usize>(pub [std::mem::MaybeUninit<u8>; N]);

impl<const N: usize> AlignedSlot<N> {
    /// An uninitialised slot.
    #[must_use]
    pub fn new() -> Self {
        AlignedSlot([std::mem::MaybeUninit::uninit(); N])
    }
}

impl<const N: usize> Default for AlignedSlot<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the README's Rust examples as doctests, so the front page cannot drift from the code.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Runs `cargo SUBCOMMAND` (`build` or `run`) on the fixture crate `tests/fixtures/NAME`, which
/// lies outside the workspace, with a target dir of its own under `target/` (the outer
/// `cargo test` holds the lock on the workspace's). Panics with cargo's stderr if it fails.
/// Returns the output and the fixture's target dir.
#[must_use]
pub fn cargo_on_fixture(
    subcommand: &str,
    name: &str,
) -> (std::process::Output, std::path::PathBuf) {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = here.join("../target").join(format!("{name}-fixture"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([subcommand, "--quiet", "--manifest-path"])
        .arg(here.join("fixtures").join(name).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "fixture crate {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, target)
}
