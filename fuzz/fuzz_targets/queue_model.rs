//! The model-based queue check (repliq/tests/model/mod.rs) under libFuzzer: the input's
//! bytes decode into Append / Read / Ack / Reopen / Crash / Roll steps run against a real queue
//! in a fresh directory and a `VecDeque` model; any divergence panics with the step and why.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../repliq/tests/model/mod.rs"]
mod queue_model;

fuzz_target!(|data: &[u8]| {
    // Bounded work per input: at most 200 steps.
    let ops = queue_model::decode(&data[..data.len().min(400)]);
    // On tmpfs when there is one: the queue's files are many and small.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    if let Err(e) = queue_model::run(base.path(), &ops) {
        panic!("{e}\nops: {ops:?}");
    }
});
