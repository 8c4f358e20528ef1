//! The gRPC transport of replication: the code generated from `repliq/proto/replication.proto`.
//!
//! The generated file is committed (users need neither `protoc` nor a build script); the test
//! `tests/tests/replication_proto.rs` regenerates it with protox and fails on drift.

/// Messages and the `Replication` service of `repliq.replication.v1`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    include!("repliq.replication.v1.rs");
}
