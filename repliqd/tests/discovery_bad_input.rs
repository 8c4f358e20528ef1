//! Bad input to the daemon: each is a clear error naming what is missing, or a daemon that keeps
//! running and says what it waits for; logs carry no ANSI colours when stderr is not a terminal.

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{free_port, repliqd};

fn config(dir: &std::path::Path, discovery: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "replication:\n  mode: asynchronous\n  discovery:\n{discovery}\
             queue:\n  capacity: 1000\n  persistence:\n    path: {}\n\
             server:\n  grpc_listen: 127.0.0.1:{}\n  http_listen: 127.0.0.1:{}\n{extra}",
            dir.join("data").display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    path
}

/// Runs the daemon to completion (bounded): (exit code, stderr).
fn fails(cfg: &std::path::Path, node: &str) -> (i32, String) {
    let mut child = repliqd(cfg, node, "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the daemon kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

const STATIC: &str =
    "    method: static\n    peers:\n      - name: b\n        address: 127.0.0.1:1\n";

#[cfg(feature = "kubernetes")]
#[test]
fn kubernetes_discovery_outside_a_cluster_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "    method: kubernetes\n    label_selector: app=repliq\n    namespace: queues\n",
        "",
    );
    let (code, err) = fails(&cfg, "a");
    assert_ne!(code, 0);
    assert!(err.contains("KUBERNETES_SERVICE_HOST is not set"), "{err}");
    assert!(err.contains("use `method: static`"), "{err}");
}

#[test]
fn an_empty_node_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), STATIC, "");
    let (code, err) = fails(&cfg, "");
    assert_ne!(code, 0);
    assert!(err.contains("the node name is empty"), "{err}");
}

#[test]
fn a_static_peer_with_the_nodes_own_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), STATIC, "");
    let (code, err) = fails(&cfg, "b");
    assert_ne!(code, 0);
    assert!(
        err.contains("replication.discovery.peers[0].name: `b` is this node's own name"),
        "{err}"
    );
}

#[test]
fn a_member_list_without_the_nodes_own_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let members = "    method: static\n    members:\n      - name: a\n        address: 127.0.0.1:1\n      \
                   - name: b\n        address: 127.0.0.1:2\n";
    let cfg = config(dir.path(), members, "");
    let (code, err) = fails(&cfg, "c");
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "replication.discovery.members: this node `c` (--node-name / NODE_NAME) is not \
             listed (members: [a, b])"
        ),
        "{err}"
    );
}

#[test]
fn peers_and_members_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let both = format!("{STATIC}    members:\n      - name: a\n        address: 127.0.0.1:1\n");
    let cfg = config(dir.path(), &both, "");
    let (code, err) = fails(&cfg, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains("replication.discovery.members: give either `peers`"),
        "{err}"
    );
}

#[test]
fn kubernetes_discovery_without_a_selector_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "    method: kubernetes\n", "");
    let (code, err) = fails(&cfg, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains("replication.discovery.label_selector: required by `method: kubernetes`"),
        "{err}"
    );
}

/// A daemon built without a backend's feature refuses a configuration that selects it, naming
/// the feature (`cargo test -p repliqd --no-default-features --test discovery_bad_input`).
#[cfg(not(all(feature = "kubernetes", feature = "etcd")))]
#[test]
fn a_backend_left_out_of_the_build_is_refused_naming_its_feature() {
    let dir = tempfile::tempdir().unwrap();
    if cfg!(not(feature = "kubernetes")) {
        let cfg = config(
            dir.path(),
            "    method: kubernetes\n    label_selector: app=repliq\n    namespace: queues\n",
            "",
        );
        let (code, err) = fails(&cfg, "a");
        assert_ne!(code, 0);
        assert!(
            err.contains("replication.discovery.method: `kubernetes` needs a repliqd built with the `kubernetes` feature"),
            "{err}"
        );
    }
    if cfg!(not(feature = "etcd")) {
        let cfg = config(
            dir.path(),
            STATIC,
            "election:\n  backend: etcd\n  endpoints: [\"http://127.0.0.1:1\"]\n",
        );
        let (code, err) = fails(&cfg, "a");
        assert_ne!(code, 0);
        assert!(
            err.contains("election.backend: `etcd` needs a repliqd built with the `etcd` feature"),
            "{err}"
        );
    }
}

#[cfg(feature = "etcd")]
#[test]
fn an_unreachable_etcd_keeps_the_daemon_up_and_is_logged_without_colours() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        STATIC,
        &format!(
            "election:\n  backend: etcd\n  endpoints: [\"http://127.0.0.1:{port}\"]\n  \
             lease_duration_ms: 3000\n  renew_deadline_ms: 1800\n  retry_period_ms: 500\n"
        ),
    );
    // A queue for the election to look after.
    repliq::QueueOptions::new()
        .create::<Tick>(dir.path().join("data").join("q"))
        .map(drop)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = repliqd(&cfg, "a", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("cannot read the lease"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in piped logs: {err:?}"
    );
    // It could never confirm the lease: after the renew deadline (1.8 s) the queue it
    // created as primary is fenced.
    let state =
        repliq::replication::ReplicationState::load(&dir.path().join("data").join("q")).unwrap();
    assert_eq!(state.role, repliq::replication::Role::Replica, "{state:?}");
    assert!(err.contains("fenced"), "{err}");
}

#[repliq::message(name = "test.Tick")]
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    n: u64,
}
