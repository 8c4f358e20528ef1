//! `server.http_auth` (issue 20): with a token file, the kubelet's probes stay open and every
//! other path of the HTTP port, `/metrics` and paths that do not exist included, needs
//! `Authorization: Bearer <token>`; a rotated token file takes effect without a restart; a
//! token file that holds nothing refuses the start; `metrics_open` leaves `/metrics` open.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::{Daemon, free_port, repliqd};

/// GET `path` with an optional `Authorization` header: (status, `WWW-Authenticate`, body).
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let challenge = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("www-authenticate")
            .then(|| value.trim().to_owned())
    });
    (status, challenge, body.to_owned())
}

fn with_auth(d: &Daemon, token_file: &Path, metrics_open: bool) {
    let text = std::fs::read_to_string(&d.config).unwrap().replace(
        "  shutdown_grace_ms: 2000\n",
        &format!(
            "  shutdown_grace_ms: 2000\n  http_auth:\n    token_file: {}\n    metrics_open: {metrics_open}\n",
            token_file.display()
        ),
    );
    std::fs::write(&d.config, text).unwrap();
}

#[test]
fn probes_are_open_everything_else_needs_the_current_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    // As a Secret mounts it: with a trailing newline.
    std::fs::write(&token_file, "s3cret-one\n").unwrap();
    let mut a = Daemon::new(
        dir.path(),
        "a",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    with_auth(&a, &token_file, false);
    a.start();
    let http = a.http();

    for probe in ["/healthz", "/readyz"] {
        let (status, _, body) = get(http, probe, None);
        assert!(
            status == 200 || status == 503,
            "{probe} without a token: {status} {body}"
        );
        assert!(
            body.contains("ok") || body.contains("ready"),
            "{probe}: {body}"
        );
    }
    // Missing, wrong, malformed tokens and unknown paths: the same 401 and challenge.
    for (path, auth) in [
        ("/metrics", None),
        ("/metrics", Some("Bearer s3cret-two")),
        ("/metrics", Some("Bearer s3cret-on")),
        ("/metrics", Some("Basic czNjcmV0LW9uZQ==")),
        ("/metrics", Some("s3cret-one")),
        ("/no-such-path", None),
        ("/ui", None),
    ] {
        let (status, challenge, body) = get(http, path, auth);
        assert_eq!(status, 401, "{path} with {auth:?}: {body}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"repliqd\""),
            "{path}"
        );
        assert!(!body.contains("repliq_"), "{path}: {body}");
    }
    let (status, _, body) = get(http, "/metrics", Some("Bearer s3cret-one"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("repliq_build_info"), "{body}");
    let (status, _, _) = get(http, "/no-such-path", Some("Bearer s3cret-one"));
    assert_eq!(
        status, 404,
        "an unknown path with the token is simply not found"
    );

    // Rotation, as a Secret update does it: a new file renamed over the old one.
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, "s3cret-two-longer\n").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    assert_eq!(
        get(http, "/metrics", Some("Bearer s3cret-one")).0,
        401,
        "the old token"
    );
    assert_eq!(
        get(http, "/metrics", Some("Bearer s3cret-two-longer")).0,
        200,
        "the new token"
    );

    // Emptied: the last token stays in use, and the log says why.
    std::fs::write(&token_file, "\n").unwrap();
    assert_eq!(
        get(http, "/metrics", Some("Bearer s3cret-two-longer")).0,
        200
    );
    assert_eq!(
        get(http, "/metrics", Some("Bearer ")).0,
        401,
        "an empty token never passes"
    );
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    assert!(
        log.contains("holds no token; keeping the previous one"),
        "{log}"
    );
}

#[test]
fn metrics_open_leaves_metrics_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let mut a = Daemon::new(
        dir.path(),
        "a",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    with_auth(&a, &token_file, true);
    a.start();
    let (status, _, body) = get(a.http(), "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("repliq_build_info"), "{body}");
    assert_eq!(
        get(a.http(), "/status", None).0,
        401,
        "other paths still need the token"
    );
    assert_eq!(get(a.http(), "/status", Some("Bearer t0ken")).0, 404);
}

#[test]
fn an_empty_or_missing_token_file_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [("empty", Some(" \n")), ("missing", None)] {
        let token_file = dir.path().join(format!("{name}-token"));
        if let Some(content) = content {
            std::fs::write(&token_file, content).unwrap();
        }
        let d = Daemon::new(
            dir.path(),
            name,
            "asynchronous",
            &[("b", free_port())],
            free_port(),
        );
        with_auth(&d, &token_file, false);
        let out = repliqd(&d.config, name, "info").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: started anyway");
        assert!(
            stderr.contains("server.http_auth.token_file")
                && stderr.contains(&*token_file.to_string_lossy()),
            "{name}: {stderr}"
        );
    }
}
