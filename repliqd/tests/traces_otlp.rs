//! Traces over OTLP, received by a real OTLP receiver: oteltest's `otelsink` (PyPI, installed by
//! `.ci/install-otelsink.sh`) on loopback, started by `.ci/otlp_sink.py`. Three daemons elect a
//! primary on a real etcd (`.ci/install-etcd.sh`); the primary's daemon is paused past its
//! lease, another node takes over, the old one resumes and fences itself. The spans each daemon
//! exported are checked: the failover's tree (`election.failover` → `election.lease_acquire`,
//! `election.promote`), the fence, the new primary's replication streams, with their `queue`,
//! `node` and `epoch` attributes. A second test sends remote batches and fetches (the client
//! service) with the caller's W3C trace context and checks that their spans are its children.
//! Both servers are required: the test fails, naming the install script, if one is missing.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use repliq::QueueOptions;
use repliq::replication::{ReplicationState, Role};
use repliqd::telemetry::span;
use serde_json::Value;
use support::etcd::start_etcd;
use support::{Daemon, signal, wait_until};

/// One span as the sink printed it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attributes: BTreeMap<String, Value>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
    fn str_attr(&self, key: &str) -> &str {
        self.attr(key).and_then(Value::as_str).unwrap_or("")
    }
    fn int_attr(&self, key: &str) -> Option<u64> {
        // OTLP ints arrive as JSON numbers (or strings, for 64-bit values some encoders quote).
        match self.attr(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// The OTLP receiver: a child process and the spans it printed so far.
struct Sink {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The python of the venv `.ci/install-otelsink.sh` made.
fn sink_python() -> PathBuf {
    if let Some(p) = std::env::var_os("REPLIQ_OTELSINK_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("repliq-otelsink-venv/bin/python")
}

fn start_sink() -> Sink {
    let python = sink_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/otlp_sink.py");
    let ok = Command::new(&python)
        .args(["-c", "import oteltest.sink, grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the OTLP receiver (PyPI oteltest) is not installed at {}: run .ci/install-otelsink.sh",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    let stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the sink said {first:?}"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::clone(&spans);
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a span line that is not JSON ({e}): {line}"));
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            let n = |k: &str| {
                v[k].as_u64()
                    .or_else(|| v[k].as_str()?.parse().ok())
                    .unwrap_or(0)
            };
            let span = Span {
                service: s("service"),
                trace_id: s("trace_id"),
                span_id: s("span_id"),
                parent_span_id: s("parent_span_id"),
                name: s("name"),
                start_ns: n("start_ns"),
                end_ns: n("end_ns"),
                attributes: v["attributes"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            };
            collected.lock().unwrap().push(span);
        }
    });
    Sink {
        child,
        stdin,
        port,
        spans,
    }
}

impl Sink {
    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

const LEASE_MS: u64 = 3000;

/// Starts `node` with traces to the sink: node a through the `tracing:` section of its config,
/// the others through the standard `OTEL_*` variables.
fn start_traced(node: &mut Daemon, sink_port: u16) {
    let endpoint = format!("http://127.0.0.1:{sink_port}");
    let service = format!("repliqd-{}", node.name);
    let config_section = node.name == "a";
    if config_section {
        let mut text = std::fs::read_to_string(&node.config).unwrap();
        if !text.contains("\ntracing:") {
            text.push_str(&format!(
                "tracing:\n  otlp_endpoint: {endpoint}\n  service_name: {service}\n"
            ));
            std::fs::write(&node.config, text).unwrap();
        }
    }
    node.start_with(|cmd| {
        cmd.env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("OTEL_SDK_DISABLED");
        if !config_section {
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
                .env("OTEL_SERVICE_NAME", &service)
                .env("OTEL_TRACES_EXPORTER", "otlp");
        }
    });
}

fn queue(n: &Daemon) -> PathBuf {
    n.root.join("orders")
}

#[repliq::message(name = "test.TracedOrder")]
#[derive(Debug, Clone, PartialEq)]
struct Order {
    id: u64,
}

#[test]
fn a_failover_is_exported_as_a_span_tree_over_otlp() {
    let etcd = start_etcd().expect("etcd is required: run .ci/install-etcd.sh");
    let sink = start_sink();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        let mut text = std::fs::read_to_string(&n.config).unwrap();
        text = text.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 1\n  ack_timeout_ms: 2000\n",
        );
        text.push_str(&format!(
            "election:\n  backend: etcd\n  endpoints: [\"{}\"]\n  prefix: traces\n  \
             lease_duration_ms: {LEASE_MS}\n  renew_deadline_ms: 1800\n  retry_period_ms: 500\n",
            etcd.endpoint
        ));
        std::fs::write(&n.config, text).unwrap();
        start_traced(n, sink.port);
    }

    // A queue on a, replicated to b and c.
    let mut q = QueueOptions::new()
        .capacity(1_000_000)
        .segment_size(1 << 20)
        .create::<Order>(queue(&nodes[0]))
        .unwrap();
    wait_until("a to replicate synchronously", || {
        ReplicationState::load(&queue(&nodes[0])).is_ok_and(|s| s.synchronous)
    });
    wait_until("the replicas to have the queue", || {
        (1..3).all(|i| queue(&nodes[i]).join("queue.meta").exists())
    });
    for id in 0..100 {
        q.enqueue(&Order { id })
            .unwrap_or_else(|e| panic!("enqueue {id}: {e}"));
    }
    drop(q);
    let epoch_before = ReplicationState::load(&queue(&nodes[0])).unwrap().epoch;

    // a pauses past its lease: b or c takes over in a new epoch.
    signal(&nodes[0], libc::SIGSTOP);
    let paused = Instant::now();
    let mut new = 0;
    wait_until("another node to become primary", || {
        new = (1..3)
            .find(|&i| {
                ReplicationState::load(&queue(&nodes[i]))
                    .is_ok_and(|s| s.role == Role::Primary && s.epoch > epoch_before)
            })
            .unwrap_or(0);
        new != 0
    });
    eprintln!("takeover {:?} after the pause", paused.elapsed());
    let new_epoch = ReplicationState::load(&queue(&nodes[new])).unwrap().epoch;
    // Records a lacks while it is paused: it catches up on them once it follows.
    let other = 3 - new;
    wait_until("the third node to follow the new primary", || {
        ReplicationState::load(&queue(&nodes[other])).is_ok_and(|s| s.epoch == new_epoch)
    });
    let mut qn = QueueOptions::new()
        .open::<Order>(queue(&nodes[new]))
        .unwrap();
    for id in 100..150 {
        qn.enqueue(&Order { id })
            .unwrap_or_else(|e| panic!("enqueue {id} on the new primary: {e}"));
    }
    drop(qn);
    // a resumes, finds its lease gone and fences itself.
    signal(&nodes[0], libc::SIGCONT);
    wait_until("a to fence itself", || {
        ReplicationState::load(&queue(&nodes[0])).is_ok_and(|s| s.role == Role::Replica)
    });
    // The new primary streams to the others; let a catch up, then stop every node (SIGTERM
    // flushes the spans still buffered).
    // (By the records it holds: its replication.json may still say the old epoch, see the
    // report of 2026-12 on the fence racing the replica service's epoch store.)
    wait_until("a to catch up with the new primary", || {
        support::held(&queue(&nodes[0])) == 150
    });
    for n in &nodes {
        signal(n, libc::SIGTERM);
    }
    for n in &mut nodes {
        let mut child = n.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not stop", n.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let new_name = nodes[new].name.clone();
    let new_service = format!("repliqd-{new_name}");
    let failover_of = |spans: &[Span]| {
        spans
            .iter()
            .find(|s| {
                s.name == span::FAILOVER
                    && s.service == new_service
                    && s.int_attr("epoch") == Some(new_epoch)
            })
            .cloned()
    };
    // The sink prints what it received; the last batches may still be on their way.
    wait_until("the failover span to reach the sink", || {
        failover_of(&sink.spans()).is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = sink.spans();
    let names: std::collections::BTreeSet<(String, String)> = spans
        .iter()
        .map(|s| (s.service.clone(), s.name.clone()))
        .collect();
    eprintln!("{} spans received: {names:?}", spans.len());

    // The failover: a root span with the queue, node, epochs and outcome...
    let failover = failover_of(&spans).unwrap();
    assert_eq!(failover.parent_span_id, "", "the failover is a root span");
    assert_eq!(failover.str_attr("queue"), "orders", "{failover:?}");
    assert_eq!(failover.str_attr("node"), new_name, "{failover:?}");
    assert_eq!(failover.str_attr("outcome"), "primary", "{failover:?}");
    assert_eq!(
        failover.int_attr("previous_epoch"),
        Some(epoch_before),
        "{failover:?}"
    );
    // ...whose children are the lease write, then the promotion, in that order.
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == failover.span_id)
        .collect();
    let child = |name: &str| {
        let found: Vec<&&Span> = children.iter().filter(|s| s.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "one {name} under the failover: {children:?}"
        );
        (*found[0]).clone()
    };
    let acquire = child(span::LEASE_ACQUIRE);
    let promote = child(span::PROMOTE);
    for c in [&acquire, &promote] {
        assert_eq!(c.trace_id, failover.trace_id, "{c:?}");
        assert_eq!(c.str_attr("queue"), "orders", "{c:?}");
        assert_eq!(c.str_attr("node"), new_name, "{c:?}");
        assert_eq!(c.int_attr("epoch"), Some(new_epoch), "{c:?}");
        assert!(
            failover.start_ns <= c.start_ns && c.end_ns <= failover.end_ns,
            "{c:?} outside {failover:?}"
        );
    }
    assert_eq!(acquire.str_attr("outcome"), "written", "{acquire:?}");
    assert!(acquire.str_attr("backend").contains("etcd"), "{acquire:?}");
    assert!(
        acquire.end_ns <= promote.start_ns,
        "promoted before the lease was written"
    );
    assert!(promote.int_attr("epoch_start").is_some(), "{promote:?}");

    // The old primary fenced itself (a, configured by its `tracing:` section).
    let fence = spans
        .iter()
        .find(|s| s.name == span::FENCE && s.service == "repliqd-a")
        .unwrap_or_else(|| panic!("no fence span from a: {names:?}"));
    assert_eq!(fence.parent_span_id, "", "{fence:?}");
    assert_eq!(fence.str_attr("queue"), "orders", "{fence:?}");
    assert_eq!(fence.str_attr("node"), "a", "{fence:?}");
    assert_eq!(fence.int_attr("epoch"), Some(epoch_before), "{fence:?}");

    // The new primary's replication streams: one per replica in the new epoch, each a root.
    let streams: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == span::STREAM
                && s.service == new_service
                && s.int_attr("epoch") == Some(new_epoch)
        })
        .collect();
    let replicas: std::collections::BTreeSet<&str> =
        streams.iter().map(|s| s.str_attr("replica")).collect();
    assert!(
        replicas.contains("a"),
        "no stream from {new_name} to a in epoch {new_epoch}: {streams:?}"
    );
    for s in &streams {
        assert_eq!(s.str_attr("queue"), "orders", "{s:?}");
        assert_eq!(s.parent_span_id, "", "{s:?}");
    }
    // a lacked the records written while it was paused: a catch-up under its stream.
    let to_a = streams
        .iter()
        .filter(|s| s.str_attr("replica") == "a")
        .map(|s| s.span_id.clone())
        .collect::<Vec<_>>();
    let catch_up = spans
        .iter()
        .find(|s| s.name == span::CATCH_UP && to_a.contains(&s.parent_span_id))
        .unwrap_or_else(|| panic!("no catch-up under the stream to a: {names:?}"));
    assert_eq!(catch_up.str_attr("queue"), "orders", "{catch_up:?}");
    assert_eq!(catch_up.int_attr("epoch"), Some(new_epoch), "{catch_up:?}");
    assert!(
        catch_up.int_attr("records").unwrap_or(0) >= 50,
        "{catch_up:?}"
    );
    // The resumed old primary's streams of the old epoch were refused by the replicas (the
    // fencing on the replica side), each in a `replication.receive` span that says why.
    let refused: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == span::RECEIVE
                && s.str_attr("primary") == "a"
                && s.int_attr("epoch") == Some(epoch_before)
                && s.str_attr("refused") == "StaleEpoch"
        })
        .collect();
    assert!(
        !refused.is_empty(),
        "no replica refused a's epoch-{epoch_before} stream in a span: {names:?}"
    );
    for s in &refused {
        assert_eq!(s.str_attr("queue"), "orders", "{s:?}");
        assert_ne!(s.service, "repliqd-a", "{s:?}");
    }
    // Only repliq's own spans are exported (not the gRPC stack's).
    for s in &spans {
        assert!(
            s.name.starts_with("election.") || s.name.starts_with("replication."),
            "an unexpected span {s:?}"
        );
    }
    let _ = sink.stdin.as_ref().map(|mut i| i.flush());
}

/// A W3C `traceparent` of the caller's operation, as an application's propagator writes it.
fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

#[test]
fn remote_produce_and_fetch_spans_are_children_of_the_callers_trace() {
    use repliq::client::{ConsumerOptions, RemoteConsumer, RemoteProducer};

    let sink = start_sink();
    let dir = tempfile::tempdir().unwrap();
    let mut node = Daemon::cluster(dir.path(), &["a"], "asynchronous")
        .pop()
        .unwrap();
    // The client service is off by default; `server:` is the config's last section.
    let mut text = std::fs::read_to_string(&node.config).unwrap();
    assert!(text.ends_with("shutdown_grace_ms: 2000\n"), "{text}");
    text.push_str("  clients: true\n");
    std::fs::write(&node.config, text).unwrap();
    start_traced(&mut node, sink.port);
    drop(
        QueueOptions::new()
            .capacity(1_000_000)
            .create::<Order>(queue(&node))
            .unwrap(),
    );

    // The application's traces: one operation that produces, one that consumes. The stream of
    // the consumer is opened in a third.
    let produce_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (first_op, second_op) = ("00f067aa0ba902b7", "00f067aa0ba902b8");
    let consume_trace = "0af7651916cd43dd8448eb211c80319c";
    let (open_op, fetch_op) = ("b7ad6b7169203331", "b7ad6b7169203332");
    let addr = format!("127.0.0.1:{}", node.grpc_port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut p = RemoteProducer::<Order>::connect(&addr, "orders", "tracer", 1)
            .await
            .unwrap();
        p.set_trace_parent(Some(traceparent(produce_trace, first_op)));
        p.send_batch(&[Order { id: 1 }, Order { id: 2 }])
            .await
            .unwrap();
        p.set_trace_parent(Some(traceparent(produce_trace, second_op)));
        p.send(&Order { id: 3 }).await.unwrap();
        // A malformed context is ignored: the batch's span stays in the stream's trace.
        p.set_trace_parent(Some("not-a-traceparent".into()));
        p.send(&Order { id: 4 }).await.unwrap();

        let options = ConsumerOptions::default().trace_parent(traceparent(consume_trace, open_op));
        let mut c = RemoteConsumer::<Order>::connect_with(&addr, "orders", "reader", options)
            .await
            .unwrap();
        c.set_trace_parent(Some(traceparent(consume_trace, fetch_op)));
        let mut got = Vec::new();
        while got.len() < 4 {
            let d = c
                .next_timeout(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a delivery within 10 s");
            got.push(d.message.id);
            c.ack(d.seq).await.unwrap();
        }
        assert_eq!(got, [1, 2, 3, 4]);
    });
    drop(runtime);
    // The consumer's stream ends on the node once the client is gone (its span with it).
    wait_until("the consumer stream's span to reach the sink", || {
        sink.spans().iter().any(|s| s.name == span::CLIENT_CONSUME)
    });
    signal(&node, libc::SIGTERM);
    let mut child = node.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    let named = |spans: &[Span], name: &str| -> Vec<Span> {
        spans.iter().filter(|s| s.name == name).cloned().collect()
    };
    wait_until("the fetch span to reach the sink", || {
        !named(&sink.spans(), span::CLIENT_FETCH).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = sink.spans();

    // The producer's batches: each a child of the operation that sent it, with what it wrote.
    let batches = named(&spans, span::CLIENT_PRODUCE_BATCH);
    assert_eq!(batches.len(), 3, "{batches:#?}");
    let batch_of = |parent: &str| {
        batches
            .iter()
            .find(|b| b.parent_span_id == parent)
            .unwrap_or_else(|| panic!("no batch span whose parent is {parent}: {batches:#?}"))
    };
    let first = batch_of(first_op);
    assert_eq!(first.trace_id, produce_trace, "{first:?}");
    assert_eq!(first.str_attr("queue"), "orders");
    assert_eq!(first.str_attr("producer"), "tracer");
    assert_eq!(first.int_attr("count"), Some(2), "{first:?}");
    assert_eq!(first.int_attr("first_seq"), Some(0), "{first:?}");
    assert_eq!(first.int_attr("duplicates"), Some(0), "{first:?}");
    let second = batch_of(second_op);
    assert_eq!(second.trace_id, produce_trace, "{second:?}");
    assert_eq!(second.int_attr("first_seq"), Some(2), "{second:?}");
    // The producer's stream was opened without a context: a root span of its own trace, the
    // parent of the batch whose context was malformed.
    let streams = named(&spans, span::CLIENT_PRODUCE);
    assert_eq!(streams.len(), 1, "{streams:#?}");
    let stream = &streams[0];
    assert_eq!(stream.parent_span_id, "", "{stream:?}");
    assert_ne!(stream.trace_id, produce_trace, "{stream:?}");
    assert_eq!(stream.str_attr("producer"), "tracer", "{stream:?}");
    let third = batch_of(&stream.span_id);
    assert_eq!(third.trace_id, stream.trace_id, "{third:?}");
    assert_eq!(third.int_attr("first_seq"), Some(3), "{third:?}");

    // The consumer: its stream in the trace it was opened in, its deliveries under the fetch.
    let consumes = named(&spans, span::CLIENT_CONSUME);
    assert_eq!(consumes.len(), 1, "{consumes:#?}");
    assert_eq!(consumes[0].trace_id, consume_trace, "{:?}", consumes[0]);
    assert_eq!(consumes[0].parent_span_id, open_op, "{:?}", consumes[0]);
    assert_eq!(
        consumes[0].str_attr("consumer"),
        "reader",
        "{:?}",
        consumes[0]
    );
    let fetches = named(&spans, span::CLIENT_FETCH);
    let delivered: u64 = fetches
        .iter()
        .map(|f| {
            assert_eq!(f.trace_id, consume_trace, "{f:?}");
            assert_eq!(f.parent_span_id, fetch_op, "{f:?}");
            f.int_attr("records").unwrap_or(0)
        })
        .sum();
    assert_eq!(delivered, 4, "{fetches:#?}");
}
