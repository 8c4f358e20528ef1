//! Mutual TLS between nodes (issue 20 item 1), with real daemons and certificates made by rcgen:
//!
//! * a replica whose certificate is not valid for its name is not replicated to; once its files
//!   are replaced with a valid certificate, the next connection uses them (no restart);
//! * a client whose certificate chains to the CA but is issued to another name than the one its
//!   `Hello` claims is refused, and nothing of its queue is written;
//! * a client without TLS, with a certificate from another CA, or with an expired one, gets
//!   nowhere;
//! * per-pod certificates are checked against each peer's configured identity;
//! * node certificates and the CA rotate under synchronous load without losing an acknowledged
//!   record.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use repliq::QueueOptions;
use repliq::replication::{PrimaryOptions, ReplicaAddr, ReplicationMode, TlsFiles, run_primary};
use support::{Daemon, Order, free_port, held, order, wait_until};

struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// Writes `dir/<file>.{crt,key}` for a certificate issued to `name` by `by`, and `dir/ca.crt`
/// for `trust`. Returns the files.
fn node_files(dir: &Path, file: &str, name: &str, by: &Ca, trust: &Ca) -> TlsFiles {
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    write_files(dir, file, params, by, trust)
}

/// Writes `dir/<file>.{crt,key}` for a certificate of `params` signed by `by`, and
/// `dir/ca.crt` for `trust`. Returns the files.
fn write_files(
    dir: &Path,
    file: &str,
    params: rcgen::CertificateParams,
    by: &Ca,
    trust: &Ca,
) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &by.issuer).unwrap();
    let files = TlsFiles::new(
        dir.join("ca.crt"),
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&files.ca, &trust.pem).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

fn with_tls(d: &Daemon, files: &TlsFiles) {
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text = text.replace(
        "  shutdown_grace_ms: 2000\n",
        &format!(
            "  shutdown_grace_ms: 2000\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            files.ca.display(),
            files.cert.display(),
            files.key.display()
        ),
    );
    std::fs::write(&d.config, text).unwrap();
}

/// Runs a primary in this process for the queue at `dir` as node `node`, streaming to `to`, with
/// `tls` (or in plain text), for `secs` seconds.
fn primary_for(dir: PathBuf, node: &str, to: (&str, u16), tls: Option<TlsFiles>, secs: u64) {
    primary_to(
        dir,
        node,
        ReplicaAddr::new(to.0, format!("127.0.0.1:{}", to.1)),
        tls,
        secs,
    );
}

/// [`primary_for`] with the replica's address (and certificate identity) given whole.
fn primary_to(dir: PathBuf, node: &str, to: ReplicaAddr, tls: Option<TlsFiles>, secs: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut options = PrimaryOptions::new(node, vec![to], ReplicationMode::Asynchronous);
    options.tls = tls;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(async move {
        let task = tokio::spawn(run_primary(dir, options, stop_rx));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let _ = stop_tx.send(true);
        let _ = task.await;
    });
}

fn queue_with_records(dir: &Path, n: u64) {
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .producer()
        .create::<Order>(dir)
        .unwrap();
    for id in 0..n {
        q.enqueue(&order(id)).unwrap();
    }
}

#[test]
fn only_certificates_issued_to_a_peers_name_replicate_and_rotated_files_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca();
    let other = ca();
    let certs = dir.path().join("certs");
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "asynchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(dir.path(), "b", "asynchronous", &[("a", pa)], pb);
    let a_files = node_files(&certs.join("a"), "tls", "a", &good, &good);
    // b starts with a certificate issued to another name: a must not stream to it.
    let b_files = node_files(&certs.join("b"), "tls", "not-b", &good, &good);
    with_tls(&a, &a_files);
    with_tls(&b, &b_files);
    a.start();
    b.start();

    queue_with_records(&a.root.join("orders"), 100);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        held(&b.root.join("orders")),
        0,
        "a streamed to a replica whose certificate names someone else"
    );
    // Rotate b's files in place (as a Secret update does): the next connection uses them.
    let fresh = node_files(&certs.join("b-new"), "tls", "b", &good, &good);
    std::fs::copy(&fresh.cert, &b_files.cert).unwrap();
    std::fs::copy(&fresh.key, &b_files.key).unwrap();
    wait_until(
        "b to be replicated to after its certificate was rotated",
        || held(&b.root.join("orders")) == 100,
    );

    // A client with a certificate from the right CA, issued to "mallory", claiming to be "a".
    let evil = dir.path().join("evil");
    queue_with_records(&evil.join("stolen"), 10);
    let mallory = node_files(&certs.join("mallory"), "tls", "mallory", &good, &good);
    primary_for(evil.join("stolen"), "a", ("b", pb), Some(mallory), 3);
    // A client with a certificate for "a" from another CA.
    let forged = node_files(&certs.join("forged"), "tls", "a", &other, &good);
    primary_for(evil.join("stolen"), "a", ("b", pb), Some(forged), 3);
    // A client without TLS.
    primary_for(evil.join("stolen"), "a", ("b", pb), None, 3);
    assert!(
        !b.root.join("stolen").exists(),
        "b created a queue for an unauthenticated client"
    );
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(
        log.contains("is not authenticated: the peer's certificate is not issued to \"a\""),
        "{log}"
    );
    assert!(log.contains("TLS handshake refused"), "{log}");
    // ...and counted: the forged certificate and the plain-text client at least.
    let (_, body) = support::http_get(
        format!("127.0.0.1:{}", b.http_port).parse().unwrap(),
        "/metrics",
    );
    let refused = support::metric(
        &body,
        "repliq_tls_handshake_failures_total{port=\"gRPC\",outcome=\"refused\"}",
    );
    assert!(refused.is_some_and(|n| n >= 2.0), "{refused:?}");

    // The real a still replicates.
    let mut q = QueueOptions::new()
        .producer()
        .open::<Order>(a.root.join("orders"))
        .unwrap();
    for id in 100..150 {
        q.enqueue(&order(id)).unwrap();
    }
    wait_until("b to follow a", || held(&b.root.join("orders")) == 150);
}

/// Gives peer `peer` of `d`'s static list the certificate identity `identity`.
fn with_peer_identity(d: &Daemon, peer: &str, identity: &str) {
    let text = std::fs::read_to_string(&d.config).unwrap();
    let entry = format!("      - name: {peer}\n");
    assert!(text.contains(&entry), "{text}");
    let text = text.replace(&entry, &format!("{entry}        identity: {identity}\n"));
    std::fs::write(&d.config, text).unwrap();
}

/// A DaemonSet's per-pod certificates: the nodes are named after Kubernetes nodes, their
/// certificates after their pods. With each peer's identity configured (Kubernetes discovery
/// sets it with `tls_identity: pod`), both ends check the pod's name: the primary the replica's
/// server certificate, the replica the primary's client certificate. A pod of another node
/// (a certificate issued to a pod that is not the claimed node's) gets nowhere.
#[test]
fn per_pod_certificates_are_checked_against_each_peers_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let certs = dir.path().join("certs");
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "node-1", "asynchronous", &[("node-2", pb)], pa);
    let mut b = Daemon::new(dir.path(), "node-2", "asynchronous", &[("node-1", pa)], pb);
    let a_files = node_files(&certs.join("a"), "tls", "repliq-x7k2p", &ca, &ca);
    let b_files = node_files(&certs.join("b"), "tls", "repliq-q9m4z", &ca, &ca);
    with_tls(&a, &a_files);
    with_tls(&b, &b_files);
    with_peer_identity(&a, "node-2", "repliq-q9m4z");
    with_peer_identity(&b, "node-1", "repliq-x7k2p");
    a.start();
    b.start();
    queue_with_records(&a.root.join("orders"), 100);
    wait_until("node-2 to hold node-1's records", || {
        held(&b.root.join("orders")) == 100
    });

    // Another pod's certificate (valid, same CA) claiming to be node-1: refused by node-2.
    let evil = dir.path().join("evil");
    queue_with_records(&evil.join("stolen"), 10);
    // (It knows node-2's pod, so the handshake succeeds and node-2 reads its Hello.)
    let node_2 =
        ReplicaAddr::new("node-2", format!("127.0.0.1:{pb}")).with_identity("repliq-q9m4z");
    let other_pod = node_files(&certs.join("other"), "tls", "repliq-zzzzz", &ca, &ca);
    primary_to(
        evil.join("stolen"),
        "node-1",
        node_2.clone(),
        Some(other_pod),
        3,
    );
    // node-1's node name in a certificate is not its identity either.
    let by_node = node_files(&certs.join("by-node"), "tls", "node-1", &ca, &ca);
    primary_to(evil.join("stolen"), "node-1", node_2, Some(by_node), 3);
    assert!(
        !b.root.join("stolen").exists(),
        "node-2 accepted a certificate not issued to node-1's pod"
    );
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(
        log.contains("the peer's certificate is not issued to \"repliq-x7k2p\""),
        "{log}"
    );
}

/// Writes `dir/<file>.{crt,key}` for a certificate issued to `name` by `by` that expired in
/// 2021, and `dir/ca.crt` for `by`.
fn expired_files(dir: &Path, file: &str, name: &str, by: &Ca) -> TlsFiles {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    write_files(dir, file, params, by, by)
}

/// Replaces `path` with `text` as a Secret update does: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A peer whose certificate (of the right CA, for the right name) has expired is refused at the
/// handshake, and nothing of its queue is written.
#[test]
fn an_expired_peer_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let certs = dir.path().join("certs");
    let (pa, pb) = (free_port(), free_port());
    let mut b = Daemon::new(dir.path(), "b", "asynchronous", &[("a", pa)], pb);
    with_tls(&b, &node_files(&certs.join("b"), "tls", "b", &ca, &ca));
    b.start();
    let evil = dir.path().join("evil");
    queue_with_records(&evil.join("stale"), 10);
    let expired = expired_files(&certs.join("expired"), "tls", "a", &ca);
    primary_for(evil.join("stale"), "a", ("b", pb), Some(expired), 3);
    assert!(
        !b.root.join("stale").exists(),
        "b accepted a peer whose certificate expired"
    );
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(log.to_lowercase().contains("expired"), "{log}");
}

/// Node certificates *and* the CA rotated while a synchronous producer writes, as cert-manager
/// does it: the new CA is added beside the old one, both nodes get certificates of the new CA,
/// the old CA is dropped, and the replica restarts (so the stream is opened again with the new
/// files only). Every `enqueue` that returned `Ok` is on the replica, in order.
#[test]
fn certificates_and_the_ca_rotate_under_synchronous_load_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (ca(), ca());
    let certs = dir.path().join("certs");
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "synchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(dir.path(), "b", "synchronous", &[("a", pa)], pb);
    let a_files = node_files(&certs.join("a"), "tls", "a", &old, &old);
    let b_files = node_files(&certs.join("b"), "tls", "b", &old, &old);
    with_tls(&a, &a_files);
    with_tls(&b, &b_files);
    a.start();
    b.start();
    let queue = a.root.join("orders");
    drop(
        QueueOptions::new()
            .capacity(10_000_000)
            .producer()
            .create::<Order>(&queue)
            .unwrap(),
    );
    wait_until("b to replicate a's queue", || {
        b.root.join("orders").join("queue.meta").exists()
    });

    // The producer: synchronous enqueues until told to stop; the ids of those that returned Ok.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (stop, queue) = (stop.clone(), queue.clone());
        std::thread::spawn(move || {
            let mut q = QueueOptions::new()
                .producer()
                .open::<Order>(&queue)
                .unwrap();
            let mut acked = Vec::new();
            let mut id = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && id < 1_000_000 {
                if q.enqueue(&order(id)).is_ok() {
                    acked.push(id);
                }
                id += 1;
            }
            acked
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(700));
    pause();
    // 1. Both CAs trusted everywhere.
    let both = format!("{}{}", old.pem, new.pem);
    replace(&a_files.ca, &both);
    replace(&b_files.ca, &both);
    pause();
    // 2. New node certificates, of the new CA.
    for (files, name) in [(&a_files, "a"), (&b_files, "b")] {
        let fresh = node_files(&certs.join(format!("{name}-new")), "tls", name, &new, &new);
        replace(&files.cert, &std::fs::read_to_string(&fresh.cert).unwrap());
        replace(&files.key, &std::fs::read_to_string(&fresh.key).unwrap());
    }
    pause();
    // 3. The old CA dropped; the replica restarts, so a's next stream uses only the new files.
    replace(&a_files.ca, &new.pem);
    replace(&b_files.ca, &new.pem);
    b.kill9();
    let at_restart = held(&queue);
    b.start();
    wait_until(
        "a to stream to the restarted b, over the new certificates only",
        || held(&b.root.join("orders")) > at_restart,
    );
    pause();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = producer.join().unwrap();
    assert!(
        acked.len() > 10,
        "the producer was acknowledged only {} times",
        acked.len()
    );
    wait_until("b to hold everything a holds", || {
        held(&b.root.join("orders")) == held(&queue)
    });
    let on_b: Vec<u64> = {
        let mut t = repliq::Tailer::<Order>::open(b.root.join("orders"), repliq::StartAt::Earliest)
            .unwrap();
        let mut out = Vec::new();
        while let Some(o) = t.try_next().unwrap() {
            out.push(o.id);
        }
        out
    };
    let held_on_b: std::collections::BTreeSet<u64> = on_b.iter().copied().collect();
    let missing: Vec<&u64> = acked.iter().filter(|id| !held_on_b.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but not on b: {missing:?}");
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    eprintln!(
        "{} acknowledged across the rotation; b holds {}",
        acked.len(),
        on_b.len()
    );
    assert!(!log.contains("panicked"), "{log}");
}
