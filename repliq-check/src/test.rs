//! The checker on hand-made histories: a clean one passes; each anomaly is found and names the
//! offending operations.

use crate::{Anomaly, Journal, Report, check, check_with, history};

const T: u64 = 1_000_000_000;

/// An enqueue: invoke at `t`, completion `kind` at `t + 1` (unless `kind` is "none").
fn enq(p: u64, s: u64, node: &str, epoch: u64, t: u64, kind: &str, jseq: Option<u64>) -> String {
    let inv = format!(
        r#"{{"type":"invoke","f":"enqueue","producer":{p},"seq":{s},"node":"{node}","epoch":{epoch},"time":{}}}"#,
        T + t
    );
    if kind == "none" {
        return inv + "\n";
    }
    let js = jseq.map_or(String::new(), |j| format!(r#","journal_seq":{j}"#));
    format!(
        "{inv}\n{{\"type\":\"{kind}\",\"f\":\"enqueue\",\"producer\":{p},\"seq\":{s},\"node\":\"{node}\",\"epoch\":{epoch},\"time\":{}{js}}}\n",
        T + t + 1
    )
}

fn rec(seq: u64, t: u64, p: u64, s: u64) -> String {
    format!(
        r#"{{"seq":{seq},"time":{},"message":{{"producer":{p},"seq":{s},"body":[1,2]}}}}"#,
        T + t
    ) + "\n"
}

fn run(history: &str, primary: &str, replicas: &[(&str, &str)]) -> Report {
    let ops = history::parse("h", history).expect("history parses");
    let p = Journal::parse("a", "a.cat", primary).expect("journal parses");
    let rs: Vec<Journal> = replicas
        .iter()
        .map(|(n, t)| Journal::parse(n, &format!("{n}.cat"), t).expect("replica parses"))
        .collect();
    check(&ops, &p, &rs).expect("checks")
}

/// A consumer `c`'s delivery and acknowledgement of message (`p`, `s`) at journal seq `j`.
fn deliver(c: &str, p: u64, s: u64, j: u64, t: u64) -> String {
    ["dequeue", "ack"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                r#"{{"type":"ok","f":"{f}","consumer":"{c}","producer":{p},"seq":{s},"node":"b","time":{},"journal_seq":{j}}}"#,
                T + t + i as u64
            ) + "\n"
        })
        .collect()
}

fn run_drained(history: &str, primary: &str, drained: &[&str]) -> Report {
    let ops = history::parse("h", history).expect("history parses");
    let p = Journal::parse("a", "a.cat", primary).expect("journal parses");
    let names: Vec<String> = drained.iter().map(|d| (*d).to_owned()).collect();
    check_with(&ops, &p, &[], &names).expect("checks")
}

fn kinds(r: &Report) -> Vec<&'static str> {
    r.anomalies.iter().map(Anomaly::kind).collect()
}

/// Three acknowledged, one unknown and stored, one unknown and lost, one failed; two
/// replicas (one behind); a consumer with one redelivery before its ack.
fn clean() -> (String, String) {
    let mut h = String::new();
    h += &enq(1, 0, "a", 1, 10, "ok", Some(0));
    h += &enq(1, 1, "a", 1, 20, "ok", Some(1));
    h += &enq(1, 2, "a", 1, 30, "unknown", None);
    h += &enq(1, 3, "a", 1, 40, "none", None);
    h += &enq(2, 0, "b", 2, 100, "ok", Some(3));
    h += &enq(2, 1, "b", 2, 110, "fail", None);
    let mut j = rec(0, 10, 1, 0) + &rec(1, 20, 1, 1) + &rec(2, 30, 1, 2);
    j += &rec(3, 100, 2, 0);
    (h, j)
}

#[test]
fn a_clean_history_passes() {
    let (mut h, j) = clean();
    for (t, f, s) in [(200, "dequeue", 0), (210, "dequeue", 0), (220, "ack", 0)] {
        h += &format!(
            r#"{{"type":"ok","f":"{f}","consumer":"c","producer":1,"seq":{s},"node":"b","time":{},"journal_seq":0}}"#,
            T + t
        );
        h += "\n";
    }
    let behind = rec(0, 10, 1, 0) + &rec(1, 20, 1, 1);
    let r = run(&h, &j, &[("b", &j), ("c", &behind)]);
    assert!(r.valid(), "{:?}", r.anomalies);
    let c = &r.counts;
    assert_eq!((c.enqueues, c.ok, c.failed, c.unknown), (6, 3, 1, 2));
    assert_eq!((c.unknown_present, c.unknown_absent), (1, 1));
    assert_eq!(
        (c.records, c.dequeues, c.redeliveries, c.acks),
        (4, 2, 1, 1)
    );
    assert_eq!((c.replicas, c.replica_records), (2, 6));
    assert!(
        r.summary()
            .starts_with("verdict valid ops 14 enqueues 6 ok 3")
    );
}

#[test]
fn a_lost_acknowledged_enqueue_is_reported_with_its_operations() {
    let (h, j) = clean();
    let without = j.replace(&rec(1, 20, 1, 1), "");
    let r = run(&h, &without, &[]);
    assert_eq!(kinds(&r), ["lost"]);
    let text = r.anomalies[0].to_string();
    assert!(text.contains("h:3:") && text.contains("h:4:"), "{text}");
    assert!(text.contains(r#""producer":1,"seq":1"#), "{text}");
}

#[test]
fn an_asynchronous_queue_may_lose_acknowledged_records_but_nothing_else() {
    let (h, j) = clean();
    let without = j.replace(&rec(1, 20, 1, 1), "");
    let r = run(&h, &without, &[]).for_asynchronous_queue();
    assert!(r.valid(), "{:?}", r.anomalies);
    assert_eq!(r.counts.lost_unreplicated, 1);
    assert!(
        r.summary().contains("lost-unreplicated 1 anomalies 0"),
        "{}",
        r.summary()
    );
    // A record no client attempted is still an anomaly.
    let extra = without + &rec(4, 120, 7, 7);
    let r = run(&h, &extra, &[]).for_asynchronous_queue();
    assert_eq!(kinds(&r), ["not-attempted"]);
}

#[test]
fn an_acknowledged_enqueue_at_another_sequence_is_reported() {
    let (h, j) = clean();
    let moved = j.replace(&rec(1, 20, 1, 1), &rec(1, 20, 9, 9)) + &rec(4, 21, 1, 1);
    let r = run(&h, &moved, &[]);
    assert!(
        kinds(&r).contains(&"acked-seq-changed"),
        "{:?}",
        r.anomalies
    );
}

#[test]
fn a_record_no_client_attempted_is_reported() {
    let (h, j) = clean();
    let extra = j.clone() + &rec(4, 120, 7, 7);
    let r = run(&h, &extra, &[]);
    assert_eq!(kinds(&r), ["not-attempted"]);
    assert!(r.anomalies[0].to_string().contains("a.cat:5"));
    // A foreign message (no producer/seq fields) too.
    let foreign = j + r#"{"seq":4,"time":5,"message":{"id":3}}"# + "\n";
    assert_eq!(kinds(&run(&h, &foreign, &[])), ["not-attempted"]);
}

#[test]
fn a_failed_enqueue_that_is_stored_is_reported() {
    let (h, j) = clean();
    let r = run(&h, &(j + &rec(4, 111, 2, 1)), &[]);
    assert_eq!(kinds(&r), ["failed-but-present"]);
}

#[test]
fn duplicates_beyond_the_attempts_are_reported_and_retries_allowed() {
    let (h, j) = clean();
    let twice = j.clone() + &rec(4, 101, 2, 0);
    let r = run(&h, &twice, &[]);
    assert_eq!(kinds(&r), ["duplicate"]);
    // The same copy after a client retry (a second invocation) is what at-least-once allows.
    let retried = h + &enq(2, 0, "b", 2, 150, "unknown", None);
    let r = run(&retried, &twice, &[]);
    assert!(r.valid(), "{:?}", r.anomalies);
    assert_eq!(r.counts.allowed_duplicates, 1);
}

#[test]
fn a_redelivery_after_the_consumers_ack_is_reported() {
    let (mut h, j) = clean();
    for (t, f) in [(200, "dequeue"), (210, "ack"), (220, "dequeue")] {
        h += &format!(
            r#"{{"type":"ok","f":"{f}","consumer":"c","producer":1,"seq":0,"node":"b","time":{},"journal_seq":0}}"#,
            T + t
        );
        h += "\n";
    }
    let r = run(&h, &j, &[]);
    assert_eq!(kinds(&r), ["redelivered-after-ack"]);
    // Another consumer (cursor) reading it is no redelivery.
    let other = h.replacen(
        r#""consumer":"c","producer":1,"seq":0,"node":"b","time":1000000220"#,
        r#""consumer":"d","producer":1,"seq":0,"node":"b","time":1000000220"#,
        1,
    );
    assert!(run(&other, &j, &[]).valid());
}

#[test]
fn one_producers_messages_out_of_order_are_reported() {
    let (h, j) = clean();
    let swapped = j.replace(&rec(0, 10, 1, 0), &rec(0, 20, 1, 1)).replacen(
        &rec(1, 20, 1, 1),
        &rec(1, 10, 1, 0),
        1,
    );
    let h = h
        .replace(r#""journal_seq":0"#, r#""journal_seq":1"#)
        .replacen(
            r#""seq":1,"node":"a","epoch":1,"time":1000000021,"journal_seq":1"#,
            r#""seq":1,"node":"a","epoch":1,"time":1000000021,"journal_seq":0"#,
            1,
        );
    let r = run(&h, &swapped, &[]);
    assert_eq!(kinds(&r), ["order"], "{:?}", r.anomalies);
}

#[test]
fn an_older_epochs_acknowledgement_after_a_newer_epochs_first_is_split_brain() {
    let (mut h, mut j) = clean();
    // Producer 1 (epoch 1, node a) is invoked and acknowledged after producer 2's first
    // acknowledgement in epoch 2 (time 101).
    h += &enq(1, 4, "a", 1, 105, "ok", Some(4));
    j += &rec(4, 105, 1, 4);
    let r = run(&h, &j, &[]);
    assert_eq!(kinds(&r), ["split-brain"], "{:?}", r.anomalies);
    let text = r.anomalies[0].to_string();
    assert!(
        text.contains(r#""epoch":2"#) && text.contains(r#""seq":4"#),
        "{text}"
    );
}

#[test]
fn an_older_epochs_write_stored_after_a_newer_epochs_first_ack_is_split_brain() {
    let (mut h, mut j) = clean();
    // Invoked before the new epoch's first ack, unknown outcome, but stored with a later time.
    h += &enq(1, 4, "a", 1, 95, "unknown", None);
    j += &rec(4, 103, 1, 4);
    let r = run(&h, &j, &[]);
    assert_eq!(kinds(&r), ["split-brain"], "{:?}", r.anomalies);
    // Acknowledged late but invoked before: no split brain (the client saw the ack late).
    let (mut h, mut j) = clean();
    h += &enq(1, 4, "a", 1, 99, "none", None);
    h += r#"{"type":"ok","f":"enqueue","producer":1,"seq":4,"node":"a","epoch":1,"time":1000000150,"journal_seq":4}"#;
    j += &rec(4, 99, 1, 4);
    assert!(run(&h, &j, &[]).valid());
}

#[test]
fn a_diverged_replica_is_reported_with_both_records() {
    let (h, j) = clean();
    let diverged = j.replace(&rec(2, 30, 1, 2), &rec(2, 31, 1, 2));
    let ahead = j.clone() + &rec(4, 200, 1, 3);
    let r = run(&h, &j, &[("b", &diverged), ("c", &ahead)]);
    assert_eq!(kinds(&r), ["replica-diverged", "replica-diverged"]);
    let text = r.anomalies[0].to_string();
    assert!(
        text.contains("replica b") && text.contains("b.cat:3") && text.contains("a.cat:3"),
        "{text}"
    );
    assert!(r.anomalies[1].to_string().contains("no record at seq 4"));
}

#[test]
fn bad_input_names_file_and_line() {
    let e = history::parse("h.jsonl", "\n{\"type\":\"ok\"}\n").expect_err("refused");
    assert!(
        e.to_string()
            .starts_with("h.jsonl:2: not a history operation"),
        "{e}"
    );
    let e = history::parse(
        "h.jsonl",
        r#"{"type":"ok","f":"enqueue","producer":1,"seq":1,"node":"a","time":1}"#,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("needs `journal_seq`"), "{e}");
    let e =
        Journal::parse("a", "a.cat", &(rec(3, 1, 1, 1) + &rec(2, 1, 1, 2))).expect_err("refused");
    assert_eq!(e.to_string(), "a.cat:2: sequence 2 follows 3");
    let ops = history::parse(
        "h",
        r#"{"type":"ok","f":"enqueue","producer":1,"seq":1,"node":"a","time":1,"journal_seq":0}"#,
    )
    .expect("parses");
    let empty = Journal::parse("a", "a.cat", "").expect("parses");
    let e = check(&ops, &empty, &[]).expect_err("refused");
    assert!(e.to_string().contains("without an open invocation"), "{e}");
}

#[test]
fn a_drained_consumer_that_missed_a_record_is_reported() {
    let (mut h, j) = clean();
    // Consumer c received every record of the journal (seq 2 is an unknown write, stored).
    for (i, (p, s)) in [(1, 0), (1, 1), (1, 2), (2, 0)].into_iter().enumerate() {
        h += &deliver("c", p, s, i as u64, 300 + 10 * i as u64);
    }
    let r = run_drained(&h, &j, &["c"]);
    assert!(r.valid(), "{:?}", r.anomalies);
    assert_eq!(
        (r.counts.drained, r.counts.dequeues, r.counts.acks),
        (1, 4, 4)
    );
    // Consumer d skipped record 1 (acknowledged to its producer) and record 2 (unknown).
    let mut hd = h.clone();
    for (i, (p, s)) in [(1, 0), (2, 0)].into_iter().enumerate() {
        hd += &deliver("d", p, s, [0, 3][i], 400 + 10 * i as u64);
    }
    let r = run_drained(&hd, &j, &["c", "d"]);
    assert_eq!(kinds(&r), ["undelivered"], "{:?}", r.anomalies);
    let text = r.anomalies[0].to_string();
    assert!(
        text.contains("consumer d")
            && text.contains("never received 2")
            && text.contains("a.cat:2"),
        "{text}"
    );
    assert!(text.contains("acknowledged: h:4:"), "{text}");
    // Not named as drained (it stopped early): not checked.
    assert!(run_drained(&hd, &j, &["c"]).valid());
}

#[test]
fn a_dequeued_message_no_client_wrote_is_a_phantom() {
    let (mut h, j) = clean();
    h += &deliver("c", 7, 7, 9, 300);
    let r = run(&h, &j, &[]);
    assert_eq!(kinds(&r), ["not-attempted"], "{:?}", r.anomalies);
    assert!(
        r.anomalies[0]
            .to_string()
            .contains(r#""producer":7,"seq":7"#)
    );
    assert_eq!(r.counts.dequeued_absent, 1);
}
