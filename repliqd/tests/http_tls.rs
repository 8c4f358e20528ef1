//! HTTPS on the HTTP port (`server.http_tls`, docs/SECURITY.md "The HTTP port"): the probes,
//! `/metrics` and the console answer over TLS with the configured certificate, a plain-text
//! request gets no answer, a replaced certificate is presented from the next connection on, and
//! its expiry is exported.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::{Daemon, free_port, wait_until};

/// A self-signed certificate for `localhost` and 127.0.0.1 expiring on `not_after`: (cert PEM,
/// key PEM).
fn self_signed(not_after: (i32, u8, u8)) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Replaces `path` as a Secret update does: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET path` over TLS to `addr`, trusting only `trusted` (PEM): (status, body), or the error
/// of the handshake or the exchange.
fn https_get(addr: SocketAddr, path: &str, trusted: &str) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // Some servers close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

#[test]
fn the_http_port_serves_https_and_follows_a_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("http.crt"), dir.path().join("http.key"));
    let (cert, key) = self_signed((2031, 5, 6));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let mut a = Daemon::new(dir.path(), "a", "asynchronous", &[], free_port());
    let text = std::fs::read_to_string(&a.config).unwrap().replace(
        "  shutdown_grace_ms: 2000\n",
        &format!(
            "  shutdown_grace_ms: 2000\n  http_tls:\n    cert: {}\n    key: {}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    std::fs::write(&a.config, text).unwrap();
    a.start();
    let addr = a.http();

    assert_eq!(
        https_get(addr, "/healthz", &cert).map(|(s, b)| (s, b.trim().to_owned())),
        Ok((200, "ok".to_owned()))
    );
    let (status, metrics) = https_get(addr, "/metrics", &cert).unwrap();
    assert_eq!(status, 200);
    let expiry = rcgen::date_time_ymd(2031, 5, 6).unix_timestamp();
    let line = format!(
        "repliq_tls_certificate_expiry_timestamp_seconds{{file=\"http_cert\",path=\"{}\"}} {expiry}",
        cert_path.display()
    );
    assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");

    // Plain HTTP gets no HTTP answer: the port speaks TLS only.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // A client that trusts another certificate is refused in the handshake.
    let (other, _) = self_signed((2032, 1, 1));
    assert!(https_get(addr, "/healthz", &other).is_err());

    // The certificate is replaced (a renewed Secret): new connections get the new one.
    let (renewed, renewed_key) = self_signed((2033, 7, 8));
    replace(&key_path, &renewed_key);
    replace(&cert_path, &renewed);
    wait_until("the renewed certificate to be served", || {
        https_get(addr, "/healthz", &renewed).is_ok_and(|(s, _)| s == 200)
    });
    assert!(
        https_get(addr, "/healthz", &cert).is_err(),
        "the old certificate is still served"
    );
}
