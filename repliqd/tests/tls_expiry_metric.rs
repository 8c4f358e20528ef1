//! The TLS files' expiry metric (issue 20): `repliq_tls_certificate_expiry_timestamp_seconds`
//! carries each file's earliest `notAfter` when the daemon starts, follows a rotated certificate
//! (files replaced as Kubernetes swaps a Secret), and keeps the last good values when a changed
//! file does not load, counting the failure in `repliq_tls_reload_failures_total`.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::{Daemon, free_port, http_get, metric, wait_until};

fn ca(not_after: (i32, u8, u8)) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert.pem())
}

/// A certificate for `name` expiring at `not_after`: (cert PEM, key PEM, Unix seconds).
fn node_cert(
    name: &str,
    not_after: (i32, u8, u8),
    by: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> (String, String, i64) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let at = params.not_after.unix_timestamp();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, by).unwrap();
    (cert.pem(), key.serialize_pem(), at)
}

/// Replaces `path` as a Secret update does: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn expiry_follows_the_files_and_a_bad_file_keeps_the_last_good_values() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca_path, cert_path, key_path) = (
        certs.join("ca.crt"),
        certs.join("tls.crt"),
        certs.join("tls.key"),
    );
    let (issuer, ca_pem) = ca((2035, 3, 4));
    let ca_at = rcgen::date_time_ymd(2035, 3, 4).unix_timestamp();
    let (cert, key, cert_at) = node_cert("a", (2030, 1, 2), &issuer);
    std::fs::write(&ca_path, &ca_pem).unwrap();
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();

    let mut a = Daemon::new(
        dir.path(),
        "a",
        "asynchronous",
        &[("b", free_port())],
        free_port(),
    );
    let text = std::fs::read_to_string(&a.config).unwrap().replace(
        "  shutdown_grace_ms: 2000\n",
        &format!(
            "  shutdown_grace_ms: 2000\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            ca_path.display(),
            cert_path.display(),
            key_path.display()
        ),
    );
    std::fs::write(&a.config, text).unwrap();
    a.start();

    let expiry = |file: &str, path: &Path| {
        let (status, body) = http_get(a.http(), "/metrics");
        assert_eq!(status, 200, "{body}");
        let sample = format!(
            "repliq_tls_certificate_expiry_timestamp_seconds{{file=\"{file}\",path=\"{}\"}}",
            path.display()
        );
        metric(&body, &sample).map(|v| v as i64)
    };
    let failures = || {
        let (_, body) = http_get(a.http(), "/metrics");
        metric(&body, "repliq_tls_reload_failures_total").map(|v| v as i64)
    };
    assert_eq!(
        expiry("cert", &cert_path),
        Some(cert_at),
        "the certificate's notAfter at start"
    );
    assert_eq!(
        expiry("ca", &ca_path),
        Some(ca_at),
        "the CA's notAfter at start"
    );
    assert_eq!(failures(), Some(0));

    // A renewed certificate: a new connection (or the periodic check) reloads the files.
    let (cert2, key2, cert2_at) = node_cert("a", (2031, 5, 6), &issuer);
    assert_ne!(cert2_at, cert_at);
    // Modification times have a coarse granularity on some file systems: the length differs
    // anyway, but make sure the stamp moves.
    std::thread::sleep(Duration::from_millis(20));
    replace(&key_path, &key2);
    replace(&cert_path, &cert2);
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], a.grpc_port));
    drop(TcpStream::connect_timeout(&grpc, Duration::from_secs(5)).unwrap());
    wait_until("the renewed certificate's expiry", || {
        expiry("cert", &cert_path) == Some(cert2_at)
    });
    assert_eq!(expiry("ca", &ca_path), Some(ca_at));

    // A half-written certificate: the previous files stay in use, their expiry too.
    replace(&cert_path, "-----BEGIN CERTIFICATE-----\nAAAA\n");
    drop(TcpStream::connect_timeout(&grpc, Duration::from_secs(5)).unwrap());
    wait_until("the failed reload to be counted", || failures() == Some(1));
    assert_eq!(expiry("cert", &cert_path), Some(cert2_at));
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    assert!(
        log.contains("do not load; keeping the previous ones"),
        "{log}"
    );
}
