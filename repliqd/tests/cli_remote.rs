//! `repliq produce --remote` and `repliq consume --remote` as real processes against a real
//! `repliqd` serving clients on loopback: JSON lines piped into `produce` land in the queue (read
//! back with the local API), `consume --count` prints them and moves the durable cursor (a second
//! run prints the next ones, a third none), a line that does not fit the schema stops `produce`
//! with its line number and nothing from it on written, and an unknown queue is a clear error.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Daemon, Order, all_orders, order, serving_clients};

const BIN: &str = env!("CARGO_BIN_EXE_repliq");

/// A finished `repliq` run: exit code, stdout, stderr.
struct Run {
    code: i32,
    out: String,
    err: String,
}

fn addr(d: &Daemon) -> String {
    format!("127.0.0.1:{}", d.grpc_port)
}

/// `repliq ARGS` with `input` on its standard input.
fn repliq(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `repliq produce --remote` of `lines` to `queue` as producer `id`, epoch 1.
fn produce(d: &Daemon, queue: &str, id: &str, lines: &str) -> Run {
    let remote = addr(d);
    let args = [
        "produce",
        "--remote",
        &remote,
        queue,
        "--producer-id",
        id,
        "--epoch",
        "1",
    ];
    repliq(&args, lines)
}

/// `repliq consume --remote` of `queue` as consumer `name`, with `more` flags.
fn consume(d: &Daemon, queue: &str, name: &str, more: &[&str]) -> Run {
    let remote = addr(d);
    let mut args = vec!["consume", "--remote", &remote, queue, "--consumer", name];
    args.extend_from_slice(more);
    repliq(&args, "")
}

/// Order `o` as a JSON line, as serde_json writes it.
fn json_line(o: &Order) -> String {
    format!("{}\n", serde_json::json!({ "id": o.id, "body": o.body }))
}

fn printed(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The durable cursor of consumer `name` in the queue at `dir`, read from its files.
fn cursor(dir: &Path, name: &str) -> Option<u64> {
    repliq::consumer_slots(dir)
        .unwrap()
        .into_iter()
        .find(|s| s.name.as_deref() == Some(name))
        .and_then(|s| s.next_seq)
}

#[test]
fn produced_lines_are_in_the_queue_and_consumed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = serving_clients(tmp.path(), 0);
    let dir = a.root.join("orders");
    let orders: Vec<Order> = (100..105).map(order).collect();
    // A blank line is skipped; the byte vectors vary in length (order(id)).
    let mut input: String = orders.iter().map(json_line).collect();
    input.insert(json_line(&orders[0]).len(), '\n');

    let run = produce(&a, "orders", "cli-test", &input);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.err.contains("5 records acknowledged") && run.err.contains("0 duplicates"),
        "{}",
        run.err
    );
    assert!(run.err.contains("queue sequences 0..=4"), "{}", run.err);
    assert_eq!(
        all_orders(&dir),
        orders,
        "the queue holds the lines, in order"
    );

    // Three of five, then the other two, then none: the cursor moves with the acknowledgements.
    let first = consume(&a, "orders", "cli", &["--count", "3", "--timeout", "30"]);
    assert_eq!(first.code, 0, "{}", first.err);
    let lines = printed(&first.out);
    assert_eq!(lines.len(), 3, "{}", first.out);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], i as u64);
        assert_eq!(line["delivery_count"], 1);
        let o = &orders[i];
        assert_eq!(
            line["message"],
            serde_json::json!({ "id": o.id, "body": o.body })
        );
    }
    assert!(
        first
            .err
            .contains(&format!("cursor on {} is at 3", addr(&a))),
        "{}",
        first.err
    );
    assert_eq!(
        cursor(&dir, "cli"),
        Some(3),
        "the durable cursor in the queue's files"
    );

    let second = consume(&a, "orders", "cli", &["--timeout", "2"]);
    assert_eq!(second.code, 0, "{}", second.err);
    let lines = printed(&second.out);
    let ids: Vec<&Value> = lines.iter().map(|l| &l["message"]["id"]).collect();
    assert_eq!(ids, [103, 104], "{}", second.out);
    assert_eq!(lines[0]["seq"], 3);
    assert_eq!(cursor(&dir, "cli"), Some(5));

    let third = consume(&a, "orders", "cli", &["--timeout", "1"]);
    assert_eq!(third.code, 0, "{}", third.err);
    assert_eq!(third.out, "", "nothing new for the consumer");
    assert!(third.err.contains("0 records printed"), "{}", third.err);

    // Another consumer name starts at the queue's first record.
    let other = consume(&a, "orders", "audit", &["--count", "5", "--timeout", "30"]);
    assert_eq!(printed(&other.out).len(), 5, "{}", other.err);
}

#[test]
fn a_line_that_does_not_fit_stops_produce_at_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let a = serving_clients(tmp.path(), 0);
    let dir = a.root.join("orders");
    let good: Vec<Order> = (1..=2).map(order).collect();
    let input = format!(
        "{}{}{}\n{}",
        json_line(&good[0]),
        json_line(&good[1]),
        r#"{"id":"three","body":[]}"#,
        json_line(&order(4)),
    );
    let run = produce(&a, "orders", "bad-lines", &input);
    assert_eq!(run.code, 1, "{}", run.err);
    assert!(
        run.err.contains(
            "line 3: does not fit the queue's schema: at /id: expected an integer, found a \
             string (the lines before it were sent, nothing from it on)"
        ),
        "{}",
        run.err
    );
    assert!(run.err.contains("2 records acknowledged"), "{}", run.err);
    assert_eq!(
        all_orders(&dir),
        good,
        "the lines before it, nothing from it on"
    );

    // Not JSON at all, on the first line: nothing is written.
    let run = produce(&a, "orders", "not-json", "{\"id\": 5,\n");
    assert_eq!(run.code, 1, "{}", run.err);
    assert!(run.err.contains("line 1: not JSON"), "{}", run.err);
    assert_eq!(all_orders(&dir), good);
}

#[test]
fn an_unknown_queue_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = serving_clients(tmp.path(), 1);
    let run = produce(&a, "nope", "p", &json_line(&order(1)));
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("no queue \"nope\""), "{}", run.err);
    let run = consume(&a, "nope", "c", &["--timeout", "1"]);
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("no queue \"nope\""), "{}", run.err);
    assert_eq!(run.out, "");
    assert!(
        !run.err.contains("records printed"),
        "no summary: {}",
        run.err
    );
    assert!(!a.root.join("nope").exists(), "nothing was created");
}
