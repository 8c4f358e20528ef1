//! One `repliqd` per persistence path: a second daemon on the same path (other ports) is refused
//! with an error naming the first, and starts once the first is gone, even after `SIGKILL`.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Daemon, free_port, repliqd};

#[test]
fn a_second_daemon_on_the_same_path_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Daemon::new(dir.path(), "a", "asynchronous", &[], free_port());
    first.start();
    // The same persistence path, other ports.
    let text = std::fs::read_to_string(&first.config).unwrap();
    let second = dir.path().join("second.yaml");
    let text = text
        .replace(&first.grpc_port.to_string(), &free_port().to_string())
        .replace(&first.http_port.to_string(), &free_port().to_string());
    std::fs::write(&second, text).unwrap();

    let started = Instant::now();
    let out = repliqd(&second, "a", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the second daemon did not exit"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon ran: {stderr}");
    let pid = first.child.as_ref().unwrap().id();
    assert!(
        stderr.contains("is already served by repliqd node a")
            && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );

    // The kernel releases the lock with the process, however it ends.
    first.kill9();
    let mut again = Daemon {
        name: "a".into(),
        root: first.root.clone(),
        config: second,
        grpc_port: 0,
        http_port: 0,
        child: None,
    };
    again.start();
    again.kill9();
}
