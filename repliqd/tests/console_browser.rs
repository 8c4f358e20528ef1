//! The live console in a real browser: three `repliqd` on loopback replicating synchronously, a
//! failover (a killed, b promoted, a back as a replica of the new epoch), a producer and a
//! consumer on the new primary. Headless Chromium (Debian's `chromium`, installed by
//! `.ci/install-chromium.sh`) loads `/ui` of the primary and of a replica; the numbers on the
//! rendered page must equal those of `/metrics`, and the failover must be listed. `repliq top
//! --once` must show the same. A screenshot of the primary's page is taken every run, and
//! written to `docs/images/console.png` with `REPLIQ_UPDATE_SCREENSHOT=1`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use repliq::replication::{ReplicationState, Role};
use support::{Daemon, Producer, held, http_get, metric, promote, wait_until};

#[test]
#[ignore = "the body of the producer processes the other tests start (support::Producer)"]
fn producer_child() {
    support::producer_child();
}

/// The Chromium binary, or a failure naming the install script.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "chromium is not installed: run `bash .ci/install-chromium.sh` (Debian's `chromium`); \
         the console tests load the page in a real headless browser"
    );
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`), letting the
/// page run for 4 s of virtual time (it polls every second); its standard output.
fn headless(url: &str, args: &[String], profile: &Path) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The text of the cell `data-field="field"` in the first table row whose opening tag has every
/// `data-*` attribute of `row` (e.g. `[("queue", "orders"), ("consumer", "billing")]`).
fn cell(dom: &str, row: &[(&str, &str)], field: &str) -> Option<String> {
    let mut rest = dom;
    while let Some(start) = rest.find("<tr ") {
        let tag_end = start + rest[start..].find('>')?;
        let tag = &rest[start..tag_end];
        let row_end = tag_end + rest[tag_end..].find("</tr>")?;
        if row
            .iter()
            .all(|(k, v)| tag.contains(&format!("data-{k}=\"{v}\"")))
        {
            let body = &rest[tag_end..row_end];
            let at = body.find(&format!("data-field=\"{field}\""))?;
            let open = at + body[at..].find('>')? + 1;
            let close = open + body[open..].find("</td>")?;
            return Some(body[open..close].to_owned());
        }
        rest = &rest[row_end..];
    }
    None
}

/// A number as the page shows it (`1,234`).
fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

/// `/metrics` of a node, and the value of one sample in it.
fn metrics(addr: SocketAddr) -> String {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

fn sample(body: &str, name_and_labels: &str) -> f64 {
    metric(body, name_and_labels).unwrap_or_else(|| panic!("no {name_and_labels} in\n{body}"))
}

/// `repliq top --url URL --once [extra]`: its standard output.
fn top(addr: SocketAddr, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_repliq"))
        .args(["top", "--once", "--url", &format!("http://{addr}")])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "repliq top: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&top(addr, &["--json"])).unwrap()
}

/// Every number the primary's page shows for the queue, its consumers and its replicas equals
/// `/metrics` (read after the page: nothing writes or reads the queue in between).
fn check_page_against_metrics(dom: &str, body: &str, queue: &str, node: &str) {
    let q = [("queue", queue)];
    let ql = format!("{{queue=\"{queue}\"}}");
    assert_eq!(
        number(&cell(dom, &q, "enqueued_records").expect("an enqueued cell")),
        sample(body, &format!("repliq_enqueued_records_total{ql}")),
        "enqueued on {node}"
    );
    assert_eq!(
        number(&cell(dom, &q, "epoch").expect("an epoch cell")),
        sample(body, &format!("repliq_queue_epoch{ql}")),
        "epoch on {node}"
    );
    assert_eq!(
        number(&cell(dom, &q, "segments").expect("a segments cell")),
        sample(body, &format!("repliq_segments{ql}")),
        "segments on {node}"
    );
    let primary = sample(body, &format!("repliq_queue_primary{ql}"));
    assert_eq!(
        cell(dom, &q, "role").as_deref(),
        Some(if primary == 1.0 { "primary" } else { "replica" }),
        "role on {node}"
    );
    let mut consumers = 0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(&format!(
            "repliq_backlog_records{{queue=\"{queue}\",cursor=\""
        )) else {
            continue;
        };
        let cursor = rest.split('"').next().unwrap();
        let labels = format!("{{queue=\"{queue}\",cursor=\"{cursor}\"}}");
        let row = [("queue", queue), ("consumer", cursor)];
        assert_eq!(
            number(&cell(dom, &row, "backlog_records").expect("a backlog cell")),
            sample(body, &format!("repliq_backlog_records{labels}")),
            "backlog of {cursor} on {node}"
        );
        assert_eq!(
            number(&cell(dom, &row, "dequeued_records").expect("a dequeued cell")),
            sample(body, &format!("repliq_dequeued_records_total{labels}")),
            "dequeued by {cursor} on {node}"
        );
        consumers += 1;
    }
    assert!(consumers > 0, "no consumer cursor in /metrics of {node}");
    let mut replicas = 0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(&format!(
            "repliq_replication_replica_up{{queue=\"{queue}\",replica=\""
        )) else {
            continue;
        };
        let replica = rest.split('"').next().unwrap();
        let labels = format!("{{queue=\"{queue}\",replica=\"{replica}\"}}");
        let row = [("queue", queue), ("replica", replica)];
        let up = sample(body, &format!("repliq_replication_replica_up{labels}"));
        assert_eq!(
            cell(dom, &row, "state").as_deref(),
            Some(if up == 1.0 { "up" } else { "down" }),
            "state of replica {replica} on {node}"
        );
        assert_eq!(
            number(&cell(dom, &row, "lag_records").expect("a lag cell")),
            sample(body, &format!("repliq_replication_lag_records{labels}")),
            "lag of {replica} on {node}"
        );
        assert_eq!(
            number(&cell(dom, &row, "replicated_records").expect("an acknowledged cell")),
            sample(body, &format!("repliq_replicated_records_total{labels}")),
            "acknowledged by {replica} on {node}"
        );
        replicas += 1;
    }
    if primary == 1.0 {
        assert!(replicas > 0, "no replica in /metrics of the primary {node}");
    }
}

#[test]
fn the_console_page_in_headless_chromium_shows_what_metrics_says() {
    let browser = chromium();
    eprintln!("browser: {}", browser.display());
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b", "c"], "synchronous");
    for n in &mut nodes {
        n.start();
    }
    let q = |n: &Daemon| n.root.join("orders");

    // Epoch 1, primary a: 300 orders, every replica holds them.
    let mut p1 = Producer::spawn(&q(&nodes[0]), 0, 300, 60);
    p1.wait();
    assert_eq!(p1.acked().len(), 300, "{:?}", p1.lines_with("TIMEOUT"));
    for n in &nodes {
        wait_until("every node to hold epoch 1", || held(&q(n)) == 300);
    }
    // b's console has seen the queue in epoch 1 (it looks every second).
    // An enqueue rate needs an earlier look of the console's sampler at the queue, and that look
    // recorded its epoch: the failover below is then a change it sees (a time-based wait was
    // not enough on a loaded machine).
    // c's page shows the failover too, so its console must have looked in epoch 1 as well.
    for n in &nodes[1..] {
        wait_until(
            "b's and c's consoles to have looked at the queue in epoch 1",
            || {
                status(n.http())["queues"].as_array().is_some_and(|qs| {
                    qs.iter().any(|q| {
                        q["name"] == "orders" && q["epoch"] == 1 && !q["enqueue_rate"].is_null()
                    })
                })
            },
        );
    }

    // Failover: a dies, b is promoted, a comes back as a replica of epoch 2.
    nodes[0].kill9();
    let state = promote(&q(&nodes[1]));
    assert_eq!(
        (state.role, state.epoch, state.epoch_start),
        (Role::Primary, 2, 300)
    );
    nodes[0].start();
    wait_until("a to follow b", || {
        ReplicationState::load(&q(&nodes[0])).is_ok_and(|s| s.role == Role::Replica && s.epoch == 2)
    });

    // Epoch 2 on b: 200 orders acknowledged by a and c, 120 read by the consumer `billing`.
    let mut p2 = Producer::spawn(&q(&nodes[1]), 300, 200, 60);
    p2.wait();
    assert_eq!(p2.acked().len(), 200, "{:?}", p2.lines_with("TIMEOUT"));
    for n in &nodes {
        wait_until("every node to hold epoch 2's orders", || held(&q(n)) == 500);
    }
    {
        let mut consumer = repliq::QueueOptions::new()
            .consumer("billing")
            .open::<support::Order>(&q(&nodes[1]))
            .unwrap();
        for i in 0..120 {
            assert_eq!(consumer.dequeue().unwrap().unwrap().id, i);
        }
    }
    let b = nodes[1].http();
    wait_until("b's replicas to be up and caught up", || {
        let body = metrics(b);
        ["a", "c"].iter().all(|r| {
            let l = format!("{{queue=\"orders\",replica=\"{r}\"}}");
            metric(&body, &format!("repliq_replication_replica_up{l}")) == Some(1.0)
                && metric(&body, &format!("repliq_replication_lag_records{l}")) == Some(0.0)
        })
    });

    // The status document: the failover seen by b. The console looks every second, so the
    // failover appears at its first look after the promotion (on a quiet machine everything above
    // takes less than that: CI once read the document before that look).
    for n in [b, nodes[2].http()] {
        wait_until("b's and c's consoles to have seen the failover", || {
            status(n)["failovers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        });
    }
    let s = status(b);
    let queue = &s["queues"][0];
    assert_eq!(queue["name"], "orders", "{s}");
    assert_eq!(
        (queue["role"].as_str(), queue["epoch"].as_u64()),
        (Some("primary"), Some(2))
    );
    assert_eq!(queue["primary"], "b", "{s}");
    let failover = &s["failovers"][0];
    assert_eq!(
        (
            failover["queue"].as_str(),
            failover["from_epoch"].as_u64(),
            failover["epoch"].as_u64()
        ),
        (Some("orders"), Some(1), Some(2)),
        "{s}"
    );
    assert_eq!(failover["primary"], "b", "{s}");
    assert_eq!(failover["epoch_start"], 300, "{s}");

    // The page in a real browser, then /metrics: nothing changes in between.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{b}/ui");
    let dom = headless(&url, &["--dump-dom".to_owned()], profile.path());
    let body = metrics(b);
    let renders: u32 = dom
        .split("data-renders=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    assert!(renders >= 1, "the page never rendered a status:\n{dom}");
    check_page_against_metrics(&dom, &body, "orders", "b");
    assert_eq!(
        cell(&dom, &[("queue", "orders")], "primary").as_deref(),
        Some("b")
    );
    assert_eq!(
        cell(
            &dom,
            &[("queue", "orders"), ("consumer", "billing")],
            "backlog_records"
        )
        .as_deref(),
        Some("380")
    );
    assert_eq!(
        cell(&dom, &[("queue", "orders"), ("epoch", "2")], "epoch").as_deref(),
        Some("1 → 2"),
        "the failover row:\n{dom}"
    );
    assert_eq!(
        cell(&dom, &[("queue", "orders"), ("epoch", "2")], "epoch_start").as_deref(),
        Some("300")
    );
    assert!(
        dom.contains("id=\"ready\" class=\"badge ok\">ready<"),
        "{dom}"
    );

    // A replica's page: replica of epoch 2, primary b, the failover seen.
    let c = nodes[2].http();
    let dom_c = headless(
        &format!("http://{c}/ui"),
        &["--dump-dom".to_owned()],
        profile.path(),
    );
    let body_c = metrics(c);
    let qc = [("queue", "orders")];
    assert_eq!(cell(&dom_c, &qc, "role").as_deref(), Some("replica"));
    assert_eq!(cell(&dom_c, &qc, "primary").as_deref(), Some("b"));
    assert_eq!(
        number(&cell(&dom_c, &qc, "enqueued_records").unwrap()),
        sample(&body_c, "repliq_enqueued_records_total{queue=\"orders\"}")
    );
    assert_eq!(
        number(&cell(&dom_c, &qc, "epoch").unwrap()),
        sample(&body_c, "repliq_queue_epoch{queue=\"orders\"}")
    );
    assert_eq!(
        cell(&dom_c, &[("queue", "orders"), ("epoch", "2")], "epoch").as_deref(),
        Some("1 → 2"),
        "{dom_c}"
    );

    // `repliq top --once`: the same numbers in a terminal frame.
    let frame = top(b, &[]);
    eprintln!("{frame}");
    let queue_line = frame
        .lines()
        .find(|l| l.starts_with("orders ") && l.contains("primary"))
        .unwrap_or_else(|| panic!("no queue line in\n{frame}"));
    let words: Vec<&str> = queue_line.split_whitespace().collect();
    assert_eq!(
        &words[..5],
        ["orders", "primary", "2", "b", "500"],
        "{frame}"
    );
    let billing = frame
        .lines()
        .find(|l| l.starts_with("orders ") && l.contains("billing"))
        .unwrap_or_else(|| panic!("no billing line in\n{frame}"));
    let words: Vec<&str> = billing.split_whitespace().collect();
    assert_eq!((words[2], words[4]), ("120", "380"), "{frame}");
    assert!(frame.contains("1 → 2"), "{frame}");

    // Under load (a producer and the consumer on b for a few seconds): the rates are not zero,
    // in the status document and on the page; the screenshot is taken meanwhile.
    let mut p3 = Producer::spawn(&q(&nodes[1]), 500, 1_000_000, 8);
    let reader_dir = q(&nodes[1]);
    let reader = std::thread::spawn(move || {
        let mut consumer = repliq::QueueOptions::new()
            .consumer("billing")
            .open::<support::Order>(&reader_dir)
            .unwrap();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            for _ in 0..20 {
                if consumer.dequeue().unwrap().is_none() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    wait_until("b's status to show an enqueue and a dequeue rate", || {
        let s = status(b);
        let queue = &s["queues"][0];
        let billing = queue["consumers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "billing"))
            .cloned()
            .unwrap_or_default();
        queue["enqueue_rate"].as_f64().is_some_and(|r| r > 0.0)
            && billing["dequeue_rate"].as_f64().is_some_and(|r| r > 0.0)
    });
    let shot = dir.path().join("console.png");
    headless(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,720".to_owned(),
        ],
        profile.path(),
    );
    let dom = headless(&url, &["--dump-dom".to_owned()], profile.path());
    let shown_rate = cell(&dom, &[("queue", "orders")], "enqueue_rate").unwrap_or_default();
    p3.wait();
    reader.join().unwrap();
    assert!(
        shown_rate
            .replace(',', "")
            .parse::<f64>()
            .is_ok_and(|r| r > 0.0),
        "the page's enqueue rate under load: {shown_rate:?}"
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("REPLIQ_UPDATE_SCREENSHOT").is_some() {
        let to = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images/console.png");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&shot, &to).unwrap();
        eprintln!("wrote {}", to.display());
    }
}

#[test]
fn the_page_and_the_status_document_are_served_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Daemon::new(
        dir.path(),
        "solo",
        "asynchronous",
        &[],
        support::free_port(),
    );
    node.start();
    let (code, page) = http_get(node.http(), "/ui");
    assert_eq!(code, 200);
    assert!(page.contains("<script src=\"/ui/console.js\""), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external asset: {page}"
    );
    for asset in ["/ui/console.js", "/ui/console.css"] {
        let (code, body) = http_get(node.http(), asset);
        assert_eq!(code, 200, "{asset}");
        assert!(
            !body.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }
    let s = status(node.http());
    assert_eq!(s["node"], "solo");
    assert_eq!(s["queues"], serde_json::json!([]));
    assert_eq!(s["ready"], true, "{s}");
    let frame = top(node.http(), &[]);
    assert!(
        frame.contains("no queues under the persistence path"),
        "{frame}"
    );
    // A daemon that is not there: exit code 2 and a message naming the URL.
    let out = Command::new(env!("CARGO_BIN_EXE_repliq"))
        .args([
            "top",
            "--once",
            "--url",
            &format!("http://127.0.0.1:{}", support::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to http://127.0.0.1:"), "{err}");
}
