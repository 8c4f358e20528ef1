//! Remote clients over mutual TLS and per-queue authorization (`server.clients.rules`, issue 21
//! item 4), with real daemons and certificates made by rcgen:
//!
//! * an authorized producer (redirected from the replica to the primary, each node's certificate
//!   checked against its name) and consumer work end to end: the records are in both journals;
//!   a node reached by an address its certificate does not name is refused by the client unless
//!   `server_name` gives a name it carries;
//! * a reader-only identity cannot produce (`PermissionDenied` naming the identity, the queue and
//!   the right; nothing written), but reads, and a record it dead-letters is written by the node;
//! * an identity no rule names is refused; a certificate from another CA, or none, is refused at
//!   the handshake; a client certificate cannot open a replication stream;
//! * `repliq consume` and `repliq produce` with `--ca`, `--cert`, `--key` do what the rules
//!   allow: the queue's schema (`Describe`) needs the right to read;
//! * rules without TLS, and an unknown right, stop the daemon with the key named.

mod support;

use std::path::Path;
use std::time::Duration;

use repliq::client::{ClientError, ClientTls, ConsumerOptions, ProducerOptions, Refused};
use repliq::client::{RemoteConsumer, RemoteProducer};
use repliq::replication::{PrimaryOptions, ReplicaAddr, ReplicationMode, TlsFiles, run_primary};
use repliq::{JournalQueue, Tailer};
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

/// Writes `dir/<file>.{crt,key}` for a certificate with the DNS names `names` signed by `by`,
/// and `dir/ca.crt` for `trust`.
fn files(dir: &Path, file: &str, names: &[&str], by: &Ca, trust: &Ca) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
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

/// The client side of `files`.
fn client_tls(files: &TlsFiles) -> ClientTls {
    ClientTls::new(&files.ca).identity(&files.cert, &files.key)
}

/// Appends `server.tls` with `files` and `clients` (a YAML fragment at the `server:` level) to
/// the node's config (`server:` is its last section).
fn configure(d: &Daemon, files: Option<&TlsFiles>, clients: &str) {
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    assert!(text.ends_with("shutdown_grace_ms: 2000\n"), "{text}");
    if let Some(f) = files {
        text.push_str(&format!(
            "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            f.ca.display(),
            f.cert.display(),
            f.key.display()
        ));
    }
    text.push_str(clients);
    std::fs::write(&d.config, text).unwrap();
}

const RULES: &str = "  clients:
    enabled: true
    rules:
      - identity: \"billing-*\"
        queues: [\"orders\", \"orders.*\"]
        allow: [read, write]
      - identity: audit
        queues: [orders]
        allow: [read]
";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn records(dir: &Path) -> Vec<Order> {
    support::all_orders(dir)
}

fn denied(e: &ClientError) -> Option<(&str, &str, &str)> {
    match e.refused() {
        Some(Refused::PermissionDenied {
            identity,
            queue,
            right,
        }) => Some((identity.as_str(), queue.as_str(), right.as_str())),
        _ => None,
    }
}

#[test]
fn clients_over_mtls_do_what_the_rules_allow_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let good = ca();
    let other = ca();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Daemon::new(dir.path(), "a", "synchronous", &[("b", pb)], pa);
    let mut b = Daemon::new(dir.path(), "b", "synchronous", &[("a", pa)], pb);
    // Node certificates carry the node name (replication checks it, and a client checks a
    // redirect's primary by it) and `localhost`, the name clients use as their seed.
    configure(
        &a,
        Some(&files(
            &certs.join("a"),
            "tls",
            &["a", "localhost"],
            &good,
            &good,
        )),
        RULES,
    );
    configure(
        &b,
        Some(&files(
            &certs.join("b"),
            "tls",
            &["b", "localhost"],
            &good,
            &good,
        )),
        RULES,
    );
    a.start();
    b.start();
    let (qa, qb) = (a.root.join("orders"), b.root.join("orders"));
    drop(JournalQueue::<Order>::new(&qa, 1_000_000).unwrap());
    wait_until("the replica of `orders` on b", || {
        repliq::replication::ReplicationState::load(&qb)
            .is_ok_and(|s| s.primary.as_deref() == Some("a"))
            && qb.join("queue.meta").exists()
    });
    let seed_b = format!("localhost:{pb}");
    let seed_a = format!("localhost:{pa}");

    let billing = client_tls(&files(
        &certs.join("billing"),
        "c",
        &["billing-1"],
        &good,
        &good,
    ));
    let audit = client_tls(&files(&certs.join("audit"), "c", &["audit"], &good, &good));
    let stranger = client_tls(&files(
        &certs.join("stranger"),
        "c",
        &["stranger"],
        &good,
        &good,
    ));
    let forged = client_tls(&files(
        &certs.join("forged"),
        "c",
        &["billing-1"],
        &other,
        &good,
    ));
    let rt = runtime();

    // An authorized producer: seeded with the replica, redirected to the primary over TLS.
    rt.block_on(async {
        let options = ProducerOptions::default().tls(billing.clone());
        let mut p =
            RemoteProducer::<Order>::connect_with(&[&seed_b], "orders", "billing-1", 1, options)
                .await
                .unwrap();
        assert_eq!(
            p.node(),
            Some(format!("127.0.0.1:{pa}").as_str()),
            "redirected to a"
        );
        for chunk in (0..100u64).collect::<Vec<_>>().chunks(25) {
            let batch: Vec<Order> = chunk.iter().map(|&id| order(id)).collect();
            p.send_batch(&batch).await.unwrap();
        }
    });
    let expected: Vec<Order> = (0..100).map(order).collect();
    assert_eq!(
        records(&qa),
        expected,
        "the primary holds the records once, in order"
    );
    wait_until("b to hold the 100 records", || held(&qb) == 100);

    // An authorized consumer reads them all.
    rt.block_on(async {
        let options = ConsumerOptions::default().tls(billing.clone());
        let mut c = RemoteConsumer::<Order>::connect_with(&seed_a, "orders", "billing", options)
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 100 {
            let d = c
                .next_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            got.push(d.message);
            c.ack(d.seq).await.unwrap();
        }
        assert_eq!(got, expected);
    });

    // By IP address, the node's certificate names no such host: refused by the client, unless
    // it checks every node against a name they carry.
    rt.block_on(async {
        let by_ip = format!("127.0.0.1:{pa}");
        let options = ProducerOptions::default().tls(billing.clone());
        let e = RemoteProducer::<Order>::connect_with(&[&by_ip], "orders", "billing-2", 1, options)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("certificate not valid for name \"127.0.0.1\""),
            "{e}"
        );
        let options = ProducerOptions::default().tls(billing.clone().server_name("localhost"));
        RemoteProducer::<Order>::connect_with(&[&by_ip], "orders", "billing-2", 1, options)
            .await
            .unwrap();
    });

    // A reader-only identity cannot produce: refused before anything is written.
    rt.block_on(async {
        let options = ProducerOptions::default().tls(audit.clone());
        let e = RemoteProducer::<Order>::connect_with(&[&seed_a], "orders", "audit-1", 1, options)
            .await
            .unwrap_err();
        assert_eq!(denied(&e), Some(("audit", "orders", "write")), "{e}");
        assert!(
            e.to_string()
                .contains("client \"audit\" may not write queue \"orders\""),
            "{e}"
        );
        assert!(!e.refused().unwrap().is_retriable());
    });
    assert_eq!(held(&qa), 100, "the denied producer wrote nothing");

    // ...but it reads; a record it dead-letters is written by the node, which needs no right
    // of the reader on `orders.dlq`.
    rt.block_on(async {
        let options = ConsumerOptions::default().tls(audit.clone()).max_deliver(1);
        let mut c = RemoteConsumer::<Order>::connect_with(&seed_a, "orders", "audit", options)
            .await
            .unwrap();
        let mut seqs = Vec::new();
        while seqs.len() < 100 {
            let d = c
                .next_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            seqs.push(d.seq);
        }
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
        // Record 0 is nacked after its only delivery: dead-lettered; the others acknowledged.
        c.nack(0, Duration::ZERO).await.unwrap();
        c.ack_each(&seqs[1..]).await.unwrap();
    });
    let dlq = a.root.join("orders.dlq");
    wait_until("the dead letter in orders.dlq", || {
        dlq.join("queue.meta").exists() && held(&dlq) == 1
    });
    let mut t =
        Tailer::<repliq::dead_letter::DeadLetter>::open(&dlq, repliq::StartAt::Earliest).unwrap();
    assert_eq!(t.try_next().unwrap().unwrap().seq, Some(0));

    // Naming a dead-letter queue of its own is writing there: the reader-only identity is
    // refused, and the queue is not created.
    rt.block_on(async {
        let options = ConsumerOptions::default()
            .tls(audit.clone())
            .dead_letter_queue("payroll");
        let e = RemoteConsumer::<Order>::connect_with(&seed_a, "orders", "audit-2", options)
            .await
            .unwrap_err();
        assert_eq!(denied(&e), Some(("audit", "payroll", "write")), "{e}");
    });
    assert!(
        !a.root.join("payroll").exists(),
        "no queue made for a denied consumer"
    );

    // An identity no rule names: refused to read, and to write.
    rt.block_on(async {
        let options = ConsumerOptions::default().tls(stranger.clone());
        let e = RemoteConsumer::<Order>::connect_with(&seed_a, "orders", "s", options)
            .await
            .unwrap_err();
        assert_eq!(denied(&e), Some(("stranger", "orders", "read")), "{e}");
        // billing-* may not touch another queue either.
        let options = ProducerOptions::default().tls(billing.clone());
        let e = RemoteProducer::<Order>::connect_with(&[&seed_a], "payments", "b-1", 1, options)
            .await
            .unwrap_err();
        assert_eq!(denied(&e), Some(("billing-1", "payments", "write")), "{e}");
    });
    assert!(!a.root.join("payments").exists());

    // A certificate from another CA, and no certificate: refused at the handshake.
    rt.block_on(async {
        let options = ProducerOptions::default().tls(forged.clone());
        let e = RemoteProducer::<Order>::connect_with(&[&seed_a], "orders", "f-1", 1, options)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e}");
        let anonymous = ClientTls::new(certs.join("billing").join("ca.crt"));
        let options = ProducerOptions::default().tls(anonymous);
        let e = RemoteProducer::<Order>::connect_with(&[&seed_a], "orders", "n-1", 1, options)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e}");
        // And plain text on a TLS port gets nowhere.
        let e = RemoteProducer::<Order>::connect(&seed_a, "orders", "p-1", 1)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e}");
    });
    assert_eq!(held(&qa), 100, "nothing written by refused clients");
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    assert!(log.contains("TLS handshake refused"), "{log}");

    // A client certificate cannot open a replication stream, whoever it claims to be.
    let evil = dir.path().join("evil");
    let mut q = repliq::QueueOptions::new()
        .capacity(1_000_000)
        .producer()
        .create::<Order>(evil.join("stolen"))
        .unwrap();
    for id in 0..10 {
        q.enqueue(&order(id)).unwrap();
    }
    drop(q);
    let billing_files = TlsFiles::new(
        certs.join("billing").join("ca.crt"),
        certs.join("billing").join("c.crt"),
        certs.join("billing").join("c.key"),
    );
    for claim in ["billing-1", "a"] {
        replicate_as(&evil.join("stolen"), claim, pb, &billing_files, 3);
    }
    assert!(
        !b.root.join("stolen").exists(),
        "b created a queue for a client certificate"
    );
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(
        log.contains("\"billing-1\" is not a peer of this node"),
        "{log}"
    );
    assert!(
        log.contains("\"a\" is not authenticated: the peer's certificate is not issued to \"a\""),
        "{log}"
    );

    // The command line over mutual TLS (`--ca`, `--cert`, `--key`): the queue's schema
    // (`Describe`) needs the right to read, producing the right to write.
    let cli = |who: &str, args: &[&str], input: &str| {
        let files = certs.join(who);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_repliq"))
            .args(args)
            .args(["--remote", &seed_a, "orders"])
            .arg("--ca")
            .arg(files.join("ca.crt"))
            .arg("--cert")
            .arg(files.join("c.crt"))
            .arg("--key")
            .arg(files.join("c.key"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code(), text(out.stdout), text(out.stderr))
    };
    let consume = [
        "consume",
        "--consumer",
        "audit-cli",
        "--count",
        "2",
        "--timeout",
        "30",
    ];
    let (code, out, err) = cli("audit", &consume, "");
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [0, 1], "{out}");
    let line = "{\"id\":1000,\"body\":[7]}\n";
    let (code, _, err) = cli("audit", &["produce"], line);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("client \"audit\" may not write queue \"orders\""),
        "{err}"
    );
    let (code, out, err) = cli("stranger", &consume, "");
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert!(
        err.contains("client \"stranger\" may not read queue \"orders\""),
        "{err}"
    );
    let (code, _, err) = cli(
        "billing",
        &["produce", "--producer-id", "billing-cli"],
        line,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        records(&qa).last(),
        Some(&Order {
            id: 1000,
            body: vec![7]
        })
    );
    assert_eq!(held(&qa), 101);

    // The refusals are counted by identity and right.
    let (_, body) = support::http_get(a.http(), "/metrics");
    for (labels, n) in [
        ("identity=\"audit\",right=\"write\"", 3.0),
        ("identity=\"stranger\",right=\"read\"", 2.0),
        ("identity=\"billing-1\",right=\"write\"", 1.0),
    ] {
        let name = format!("repliq_client_denied_total{{{labels}}}");
        assert_eq!(support::metric(&body, &name), Some(n), "{name}\n{body}");
    }
}

/// Streams the queue at `dir` to the replica on `port` as node `claim`, with `tls`, for `secs`.
fn replicate_as(dir: &Path, claim: &str, port: u16, tls: &TlsFiles, secs: u64) {
    let rt = runtime();
    let to = ReplicaAddr::new("b", format!("127.0.0.1:{port}"));
    let mut options = PrimaryOptions::new(claim, vec![to], ReplicationMode::Asynchronous);
    options.tls = Some(tls.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dir = dir.to_owned();
    rt.block_on(async move {
        let task = tokio::spawn(run_primary(dir, options, stop_rx));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let _ = stop_tx.send(true);
        let _ = task.await;
    });
}

/// Runs `repliqd` on `d`'s config and returns what it printed on stderr, expecting it to exit
/// unsuccessfully within 20 s without serving (a daemon that starts is killed and fails the test).
fn refused_config(d: &Daemon) -> String {
    let mut child = support::repliqd(&d.config, &d.name, "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    match status {
        Some(status) => assert!(!status.success(), "repliqd exited 0 with {:?}", d.config),
        None => panic!("repliqd started with {:?}: {stderr}", d.config),
    }
    stderr
}

#[test]
fn rules_without_tls_and_unknown_rights_stop_the_daemon_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let good = ca();
    let plain = Daemon::new(dir.path(), "p", "asynchronous", &[], free_port());
    configure(&plain, None, RULES);
    let stderr = refused_config(&plain);
    assert!(
        stderr.contains("server.clients.rules: need `server.tls`: without TLS a client has no"),
        "{stderr}"
    );

    let bad = Daemon::new(dir.path(), "q", "asynchronous", &[], free_port());
    let tls = files(&certs.join("q"), "tls", &["q"], &good, &good);
    configure(
        &bad,
        Some(&tls),
        &RULES.replace("[read, write]", "[read, delete]"),
    );
    let stderr = refused_config(&bad);
    assert!(
        stderr.contains(
            "server.clients.rules[0].allow[1]: unknown variant `delete`, expected `read` or \
             `write`"
        ),
        "{stderr}"
    );

    // The short form still works, with and without TLS.
    let mut flag = Daemon::new(dir.path(), "r", "asynchronous", &[], free_port());
    configure(&flag, None, "  clients: true\n");
    flag.start();
}
