//! The Slack sink against an incoming-webhook server in the test (HTTP/1.1 on loopback) that
//! checks every request: method, path, content type, a JSON object with exactly one key `text`,
//! and that text being what the rules render for that message. The server is killed (its
//! listener and connections dropped) and restarted mid-stream; the connector is killed at exact
//! crash points and as a task mid-stream. Every matching message arrives, none is lost, and a
//! message comes twice only as documented (a post whose response was lost, or the uncommitted
//! batch after a connector crash). Dead letters: a message Slack refuses (`400
//! invalid_payload`), after transient `500`s and a `429`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use repliq::{JournalQueue, QueueOptions};
use repliq_connect::{
    ConnectorConfig, ConnectorKind, DeadLetter, Format, RetryConfig, SlackCondition, SlackRule,
    SlackSink, SlackSinkConfig, Stats, spawn,
};
use support::{At, Order, order};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const PATH: &str = "/services/T000/B000/XXXX";

#[derive(Default)]
struct Seen {
    /// Texts accepted (200), in arrival order.
    texts: Vec<String>,
    /// Requests that broke the webhook's contract, with what was wrong.
    bad: Vec<String>,
}

/// An incoming-webhook server: answers `500` to the next `fail_500` posts, `429` to the next
/// `fail_429`, `400 invalid_payload` to a text containing "REJECT", `200 ok` otherwise.
struct Webhook {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    fail_500: Arc<AtomicU32>,
    fail_429: Arc<AtomicU32>,
    task: Option<JoinHandle<()>>,
}

impl Webhook {
    async fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut w = Webhook {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            fail_500: Arc::default(),
            fail_429: Arc::default(),
            task: None,
        };
        w.serve(listener);
        w
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{PATH}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (seen, f500, f429) = (
            self.seen.clone(),
            self.fail_500.clone(),
            self.fail_429.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            // Aborting this task drops the set: every connection is cut.
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                conns.spawn(connection(sock, seen.clone(), f500.clone(), f429.clone()));
            }
        }));
    }

    /// Drops the listener and every open connection, as a dead server would.
    async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn texts(&self) -> Vec<String> {
        self.seen.lock().unwrap().texts.clone()
    }

    fn bad(&self) -> Vec<String> {
        self.seen.lock().unwrap().bad.clone()
    }
}

async fn connection(
    sock: TcpStream,
    seen: Arc<Mutex<Seen>>,
    fail_500: Arc<AtomicU32>,
    fail_429: Arc<AtomicU32>,
) {
    let mut r = BufReader::new(sock);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, reply) = judge(&request_line, &headers, &body, &seen, &fail_500, &fail_429);
        let extra = if status == 429 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn judge(
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    seen: &Mutex<Seen>,
    fail_500: &AtomicU32,
    fail_429: &AtomicU32,
) -> (u16, &'static str) {
    let mut seen = seen.lock().unwrap();
    let mut bad = |what: String| {
        seen.bad.push(what);
        (400, "invalid_payload")
    };
    if request_line.trim_end() != format!("POST {PATH} HTTP/1.1") {
        return bad(format!("request line {request_line:?}"));
    }
    if headers.get("content-type").map(String::as_str) != Some("application/json") {
        return bad(format!("content type {:?}", headers.get("content-type")));
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice(body) else {
        return bad(format!(
            "not a JSON object: {}",
            String::from_utf8_lossy(body)
        ));
    };
    let Some(text) = obj.get("text").and_then(|t| t.as_str()) else {
        return bad(format!("no text: {obj:?}"));
    };
    if obj.len() != 1 {
        return bad(format!("keys other than text: {obj:?}"));
    }
    let take = |c: &AtomicU32| {
        c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if take(fail_500) {
        return (500, "internal_error");
    }
    if take(fail_429) {
        return (429, "rate_limited");
    }
    if text.contains("REJECT") {
        return (400, "invalid_payload");
    }
    seen.texts.push(text.to_owned());
    (200, "ok")
}

fn base(
    name: &str,
    queue: &Path,
    dead: Option<&Path>,
    batch: usize,
    kind: ConnectorKind,
) -> ConnectorConfig {
    ConnectorConfig {
        name: name.into(),
        queue: queue.into(),
        format: Format::Json,
        dead_letter: dead.map(Into::into),
        batch,
        retry: RetryConfig {
            initial_ms: 20,
            max_ms: 200,
        },
        kind,
        unknown: Default::default(),
    }
}

/// Big orders (qty above 4) and empty ones (qty 0) are posted; the rest match no rule.
fn rules() -> Vec<SlackRule> {
    let when = |above: Option<f64>, equals: Option<serde_json::Value>| SlackCondition {
        field: "qty".into(),
        equals,
        above,
        below: None,
        exists: None,
    };
    vec![
        SlackRule {
            when: Some(when(Some(4.0), None)),
            text: "big order {id}: {qty} x {item}".into(),
        },
        SlackRule {
            when: Some(when(None, Some(0.into()))),
            text: "empty order {id} (queue seq {seq})".into(),
        },
    ]
}

/// What the rules render for order `id` (enqueued at sequence `id`), if anything.
fn expected(id: u64) -> Option<String> {
    let o = order(id);
    match o.qty {
        q if q > 4 => Some(format!("big order {id}: {q} x {}", o.item)),
        0 => Some(format!("empty order {id} (queue seq {id})")),
        _ => None,
    }
}

fn slack_cfg(url: &str) -> SlackSinkConfig {
    SlackSinkConfig {
        webhook_url: url.into(),
        rules: rules(),
        timeout_ms: 2000,
    }
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_sink_posts_every_matching_message_across_crashes_and_server_kills() {
    const M: u64 = 1_400;
    const BATCH: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut hook = Webhook::start().await;
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    for i in 0..M {
        assert_eq!(q.enqueue(&order(i)).unwrap(), i, "sequence = id");
    }
    let want: BTreeMap<u64, String> = (0..M).filter_map(|i| Some((i, expected(i)?))).collect();
    let cfg = base(
        "to-slack",
        &queue,
        None,
        BATCH,
        ConnectorKind::SlackSink(slack_cfg(&hook.url())),
    );
    let stats = Arc::new(Stats::default());
    let mut crashes = support::crash_sink_at(
        "slack sink",
        &cfg,
        &stats,
        &[(At::Before, 2), (At::After, 2), (At::After, 5)],
        || SlackSink::new("to-slack", slack_cfg(&hook.url())).unwrap(),
    )
    .await;
    // The server dies under the running connector, twice, and comes back.
    let running = spawn(cfg.clone()).unwrap();
    let s = running.stats().clone();
    let mut server_kills = 0;
    for at in [150, 300] {
        until("posts", 60, || hook.texts().len() >= at).await;
        hook.kill().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        hook.restart().await;
        server_kills += 1;
    }
    // Then the connector dies mid-stream (a task abort: no commit) and starts again.
    until("posts", 60, || hook.texts().len() >= 420).await;
    running.kill().await;
    crashes += 1;
    let running = spawn(cfg.clone()).unwrap();
    let s2 = running.stats().clone();
    // Done when every matching message arrived (a lost one times this out) and the cursor is
    // at the end.
    until("every matching message", 60, || {
        let got: std::collections::BTreeSet<String> = hook.texts().into_iter().collect();
        want.values().all(|t| got.contains(t))
    })
    .await;
    until("the cursor at the end", 30, || s2.snapshot().lag == 0).await;
    running.stop().await.unwrap();

    let texts = hook.texts();
    assert_eq!(
        hook.bad(),
        Vec::<String>::new(),
        "requests breaking the contract"
    );
    let mut count: BTreeMap<u64, u64> = BTreeMap::new();
    for t in &texts {
        let id: u64 = t
            .split_once("order ")
            .and_then(|(_, r)| r.split([':', ' ']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected text {t:?}"));
        assert_eq!(Some(t), want.get(&id), "text of order {id}");
        *count.entry(id).or_default() += 1;
    }
    let lost = want.keys().filter(|id| !count.contains_key(id)).count() as u64;
    let dups: u64 = count.values().map(|n| n - 1).sum();
    let retries = stats.snapshot().retries + s.snapshot().retries + s2.snapshot().retries;
    println!(
        "slack sink: {M} messages, {} matching the rules, received {}, lost {lost}, duplicated \
         {dups} (connector killed {crashes}x, batch {BATCH}; server killed {server_kills}x; \
         {retries} retries)",
        want.len(),
        texts.len()
    );
    assert_eq!(lost, 0);
    // Documented window: one uncommitted batch per connector crash, one post per server kill.
    assert!(
        dups <= crashes * BATCH as u64 + server_kills,
        "{dups} duplicates exceed the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_sink_dead_letters_what_slack_refuses_and_retries_what_may_heal() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    hook.fail_500.store(2, Ordering::SeqCst);
    hook.fail_429.store(1, Ordering::SeqCst);
    let queue = dir.path().join("orders");
    let mut q = JournalQueue::<Order>::new(&queue, 1 << 20).unwrap();
    let mut bad = order(1);
    bad.item = "REJECT me".into();
    for o in [order(0), bad, order(2)] {
        q.enqueue(&o).unwrap();
    }
    let dead = dir.path().join("orders.dead");
    let cfg = SlackSinkConfig {
        webhook_url: hook.url(),
        rules: vec![SlackRule {
            when: None,
            text: "order {id}: {item}".into(),
        }],
        timeout_ms: 2000,
    };
    let running = spawn(base(
        "slack-dl",
        &queue,
        Some(&dead),
        16,
        ConnectorKind::SlackSink(cfg),
    ))
    .unwrap();
    let s = running.stats().clone();
    until("the batch", 30, || {
        let s = s.snapshot();
        s.lag == 0 && s.dead_letters == 1 && s.forwarded == 2
    })
    .await;
    let retries = s.snapshot().retries;
    running.stop().await.unwrap();
    assert_eq!(hook.bad(), Vec::<String>::new());
    assert_eq!(
        hook.texts(),
        vec!["order 0: item number 0", "order 2: item number 2"]
    );
    assert_eq!(retries, 3, "two 500s and a 429, retried");
    let mut dq = QueueOptions::new()
        .consumer("check")
        .open::<DeadLetter>(&dead)
        .unwrap();
    let letter = dq.dequeue().unwrap().unwrap();
    assert_eq!(letter.seq, Some(1));
    assert_eq!(letter.reason, "HTTP 400: invalid_payload");
    assert!(dq.dequeue().unwrap().is_none());
    println!(
        "slack sink: 3 messages, 2 posted, 1 dead-lettered ({}), {retries} transient failures retried",
        letter.reason
    );
}
