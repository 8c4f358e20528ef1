//! The gRPC code for `repliq/proto/client.proto` is committed (users need no `protoc` and no
//! build script). This test regenerates it with protox (a pure-Rust protobuf compiler) and
//! tonic-prost-build and fails if the committed file drifted from the `.proto`.
//! Regenerate after changing the `.proto` with `REPLIQ_BLESS=1 cargo test -p repliq-tests --test
//! client_proto`.

use std::path::Path;

#[test]
fn committed_grpc_code_matches_the_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../repliq");
    let proto_dir = root.join("proto");
    let committed = root.join("src/client/proto/repliq.client.v1.rs");

    let fds = protox::compile([proto_dir.join("client.proto")], [&proto_dir])
        .expect("the .proto compiles");
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .out_dir(out.path())
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .expect("tonic-prost-build generates code");
    let generated = std::fs::read_to_string(out.path().join("repliq.client.v1.rs")).unwrap();

    if std::env::var_os("REPLIQ_BLESS").is_some() {
        std::fs::write(&committed, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        current == generated,
        "{} is out of date with the .proto; regenerate with \
         `REPLIQ_BLESS=1 cargo test -p repliq-tests --test client_proto`",
        committed.display()
    );
}
