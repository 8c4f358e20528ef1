//! The log shipping configurations of `deploy/logging/` against lines a real `repliqd` wrote.
//!
//! Neither Fluent Bit nor Fluentd is packaged here, so this test reads their configuration files
//! and applies the parsing rules they name, as each program defines them: the tail input's
//! regular expression over a container runtime's CRI line (`<time> stderr F <line>`), then the
//! `parser` filter's JSON parser over the captured `log` key, with each setting that decides what
//! survives (`Reserve_Data`/`reserve_data`, `Preserve_Key`/`remove_key_name_field`,
//! `Time_Key`/`time_key`, `Time_Keep`/`keep_time_key`, `Time_Format`/`time_format`). Every key of
//! every daemon line must come out of both with its value.
//!
//! The lines come from two daemons run with `--log-format json` (startup, a replica subscribing,
//! a replica lost, a shutdown); the test also checks the documented keys and that no ANSI escape
//! reaches a file in either format.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};
use support::{Daemon, signal, wait_until};

#[repliq::message(name = "test.LoggedOrder")]
#[derive(Debug, Clone, PartialEq)]
struct Order {
    id: u64,
}

type Record = Map<String, Value>;

fn deploy(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/logging")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A strptime format as a regular expression, for the directives the configurations use.
fn time_format_regex(format: &str) -> Regex {
    let mut re = String::from("^");
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            re.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        match chars.next() {
            Some('Y') => re.push_str(r"\d{4}"),
            Some('m' | 'd' | 'H' | 'M' | 'S') => re.push_str(r"\d{2}"),
            // Fluent Bit's %L and Ruby's %N: fractional seconds, any number of digits.
            Some('L' | 'N') => re.push_str(r"\d+"),
            Some('z') => re.push_str(r"(Z|[+-]\d{2}:?\d{2})"),
            other => panic!("time format directive %{other:?} not handled by this test"),
        }
    }
    re.push('$');
    Regex::new(&re).unwrap()
}

/// What a parser does with its time key: the value must match the format (else the program
/// falls back to the read time and says so); the key is removed unless it is kept.
fn take_time(record: &mut Record, key: Option<&str>, format: Option<&str>, keep: bool, who: &str) {
    let Some(key) = key else { return };
    let value = record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{who}: no time key {key:?} in {record:?}"))
        .to_owned();
    if let Some(format) = format {
        assert!(
            time_format_regex(format).is_match(&value),
            "{who}: {key}={value:?} does not match the time format {format:?}"
        );
    }
    if !keep {
        record.remove(key);
    }
}

/// A regular expression of Fluent Bit (Onigmo) or Fluentd (Ruby) with named groups, applied
/// with Rust's `regex` (same syntax for what the configurations use).
fn regex_parse(expression: &str, line: &str, who: &str) -> Record {
    let re = Regex::new(expression).unwrap_or_else(|e| panic!("{who}: {e}"));
    let caps = re
        .captures(line)
        .unwrap_or_else(|| panic!("{who}: {expression} does not match {line:?}"));
    re.capture_names()
        .flatten()
        .filter_map(|n| {
            Some((
                n.to_owned(),
                Value::String(caps.name(n)?.as_str().to_owned()),
            ))
        })
        .collect()
}

fn json_parse(text: &str, who: &str) -> Record {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        other => panic!("{who}: not a JSON object ({other:?}): {text:?}"),
    }
}

// ---- Fluent Bit ----

/// `[SECTION]` blocks of a Fluent Bit classic configuration, keys lower-cased.
fn fluent_bit_sections(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_uppercase(), BTreeMap::new()));
            continue;
        }
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (_, section) = out.last_mut().expect("a key before any section");
        section.insert(k.to_lowercase(), v.trim().to_owned());
    }
    out
}

fn on(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_lowercase().as_str(), "on" | "true" | "yes"))
}

/// Fluent Bit: `tail` with its `Parser`, then each `parser` filter, over one CRI line.
fn fluent_bit(cri_line: &str, main: &str, parsers: &str) -> Record {
    let main = fluent_bit_sections(main);
    let parsers: BTreeMap<String, BTreeMap<String, String>> = fluent_bit_sections(parsers)
        .into_iter()
        .filter(|(s, _)| s == "PARSER")
        .map(|(_, p)| (p["name"].clone(), p))
        .collect();
    let apply = |name: &str, text: &str| -> Record {
        let p = parsers
            .get(name)
            .unwrap_or_else(|| panic!("fluent-bit: no parser {name}"));
        let who = format!("fluent-bit parser {name}");
        let mut record = match p["format"].as_str() {
            "regex" => regex_parse(&p["regex"], text, &who),
            "json" => json_parse(text, &who),
            f => panic!("{who}: format {f} not handled by this test"),
        };
        take_time(
            &mut record,
            p.get("time_key").map(String::as_str),
            p.get("time_format").map(String::as_str),
            on(p.get("time_keep")),
            &who,
        );
        record
    };
    let input = main
        .iter()
        .find(|(s, k)| s == "INPUT" && k.get("name").is_some_and(|n| n == "tail"))
        .map(|(_, k)| k)
        .expect("fluent-bit: a tail input");
    let mut record = apply(&input["parser"], cri_line);
    for (_, filter) in main
        .iter()
        .filter(|(s, k)| s == "FILTER" && k.get("name").is_some_and(|n| n == "parser"))
    {
        let key = &filter["key_name"];
        let text = record
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("fluent-bit: no key {key} to parse in {record:?}"))
            .to_owned();
        let parsed = apply(&filter["parser"], &text);
        // Reserve_Data keeps the record's other keys; Preserve_Key keeps the parsed one.
        let mut out = if on(filter.get("reserve_data")) {
            let mut kept = record.clone();
            if !on(filter.get("preserve_key")) {
                kept.remove(key);
            }
            kept
        } else if on(filter.get("preserve_key")) {
            Record::from_iter([(key.clone(), Value::String(text))])
        } else {
            Record::new()
        };
        out.extend(parsed);
        record = out;
    }
    record
}

// ---- Fluentd ----

/// The `key value` lines directly inside the first `<tag ...>` block whose opening line starts
/// with `open`, and the `<parse>` block inside it.
fn fluentd_block(text: &str, open: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with(open));
    assert!(lines.next().is_some(), "fluentd: no {open} block");
    let (mut outer, mut parse) = (BTreeMap::new(), BTreeMap::new());
    let mut in_parse = false;
    for line in lines {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line {
            "<parse>" => in_parse = true,
            "</parse>" => in_parse = false,
            l if l.starts_with("</") => break,
            l => {
                let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                let target = if in_parse { &mut parse } else { &mut outer };
                target.insert(k.to_owned(), v.trim().to_owned());
            }
        }
    }
    (outer, parse)
}

fn fluentd_parse(parse: &BTreeMap<String, String>, text: &str, who: &str) -> Record {
    let mut record = match parse["@type"].as_str() {
        "regexp" => {
            let e = &parse["expression"];
            let e = e
                .strip_prefix('/')
                .and_then(|e| e.strip_suffix('/'))
                .unwrap_or_else(|| panic!("{who}: expression {e} is not /.../"));
            regex_parse(e, text, who)
        }
        "json" => json_parse(text, who),
        t => panic!("{who}: parser {t} not handled by this test"),
    };
    // Fluentd's default time key is `time`; `keep_time_key` defaults to false.
    let key = parse.get("time_key").map_or("time", String::as_str);
    let keep = parse.get("keep_time_key").is_some_and(|v| v == "true");
    let present = record.contains_key(key).then_some(key);
    take_time(
        &mut record,
        present,
        parse.get("time_format").map(String::as_str),
        keep,
        who,
    );
    record
}

/// Fluentd: `in_tail` with its `<parse>`, then `filter_parser`, over one CRI line.
fn fluentd(cri_line: &str, conf: &str) -> Record {
    let (source, source_parse) = fluentd_block(conf, "<source>");
    assert_eq!(source["@type"], "tail");
    let record = fluentd_parse(&source_parse, cri_line, "fluentd <source>");
    let (filter, filter_parse) = fluentd_block(conf, "<filter repliq.");
    assert_eq!(filter["@type"], "parser");
    let key = &filter["key_name"];
    let text = record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("fluentd: no key {key} to parse in {record:?}"))
        .to_owned();
    let parsed = fluentd_parse(&filter_parse, &text, "fluentd <filter>");
    let mut out = if filter.get("reserve_data").is_some_and(|v| v == "true") {
        let mut kept = record.clone();
        if filter
            .get("remove_key_name_field")
            .is_some_and(|v| v == "true")
        {
            kept.remove(key);
        }
        kept
    } else {
        Record::new()
    };
    out.extend(parsed);
    out
}

// ---- the daemon's lines ----

/// The daemon lines of a run of two nodes (a primary and its replica) in `format`: startup, a
/// replica subscribing, a replica lost, a shutdown.
fn daemon_lines(format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Daemon::cluster(dir.path(), &["a", "b"], "asynchronous");
    for n in &mut nodes {
        n.start_with(|cmd| {
            cmd.args(["--log-format", format]);
        });
    }
    let mut q = repliq::QueueOptions::new()
        .capacity(1000)
        .create::<Order>(nodes[0].root.join("orders"))
        .unwrap();
    for id in 0..10 {
        q.enqueue(&Order { id }).unwrap();
    }
    wait_until("b to hold the queue", || {
        support::held(&nodes[1].root.join("orders")) == 10
    });
    nodes[1].kill9();
    let log = nodes[0].log_path();
    wait_until("a to log the lost replica", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("replica unreachable"))
    });
    signal(&nodes[0], libc::SIGTERM);
    let mut child = nodes[0].child.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "a did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = std::fs::read(&log).unwrap();
    assert!(
        !bytes.contains(&0x1b),
        "an ANSI escape in a {format} log written to a file"
    );
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The line as containerd writes it into /var/log/containers/*.log.
fn cri(line: &str) -> String {
    format!("2026-12-06T07:55:00.123456789Z stderr F {line}")
}

#[test]
fn every_key_of_the_daemons_json_lines_survives_fluent_bit_and_fluentd() {
    let lines = daemon_lines("json");
    let originals: Vec<Record> = lines.iter().map(|l| json_parse(l, "repliqd")).collect();

    // The documented keys: on every line, and the per-event ones where they belong.
    let time = time_format_regex("%Y-%m-%dT%H:%M:%S.%LZ");
    for o in &originals {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(o.get(key).is_some_and(Value::is_string), "no {key}: {o:?}");
        }
        assert!(time.is_match(o["timestamp"].as_str().unwrap()), "{o:?}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&o["level"].as_str().unwrap()),
            "{o:?}"
        );
        assert!(
            !o.contains_key("fields") && !o.contains_key("span"),
            "{o:?}"
        );
    }
    let with = |message: &str| {
        originals
            .iter()
            .find(|o| o["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))
    };
    assert_eq!(with("repliqd listening")["node"], "a");
    let subscribed = with("replica subscribed");
    assert_eq!(subscribed["queue"], "orders");
    assert_eq!(subscribed["replica"], "b");
    assert!(subscribed["epoch"].is_u64(), "{subscribed:?}");
    let lost = with("replica unreachable");
    assert_eq!(
        (&lost["queue"], &lost["replica"]),
        (&"orders".into(), &"b".into())
    );
    assert!(lost["error"].is_string(), "{lost:?}");

    let (bit_main, bit_parsers) = (
        deploy("fluent-bit/fluent-bit.conf"),
        deploy("fluent-bit/parsers.conf"),
    );
    let fluentd_conf = deploy("fluentd/fluent.conf");
    for (line, original) in lines.iter().zip(&originals) {
        let line = cri(line);
        for (who, record) in [
            ("Fluent Bit", fluent_bit(&line, &bit_main, &bit_parsers)),
            ("Fluentd", fluentd(&line, &fluentd_conf)),
        ] {
            for (k, v) in original {
                assert_eq!(
                    record.get(k),
                    Some(v),
                    "{who} lost or changed {k:?} of {line}"
                );
            }
            assert_eq!(record.get("stream"), Some(&Value::from("stderr")), "{who}");
            assert!(
                !record.contains_key("log"),
                "{who} kept the raw line: {record:?}"
            );
        }
    }

    // The rules bite: without Time_Keep / keep_time_key the timestamp would be dropped.
    let line = cri(&lines[0]);
    let no_keep = bit_parsers.replace("Time_Keep    On", "Time_Keep    Off");
    assert_ne!(no_keep, bit_parsers, "Time_Keep On is in parsers.conf");
    assert!(!fluent_bit(&line, &bit_main, &no_keep).contains_key("timestamp"));
    let no_keep = fluentd_conf.replace("keep_time_key true", "keep_time_key false");
    assert_ne!(no_keep, fluentd_conf);
    assert!(!fluentd(&line, &no_keep).contains_key("timestamp"));
    eprintln!(
        "{} daemon lines checked through both configurations",
        lines.len()
    );
}

#[test]
fn text_logs_written_to_a_file_have_no_colour_codes() {
    // daemon_lines checks for ESC bytes; the text format is the one that colours a terminal.
    let lines = daemon_lines("text");
    assert!(
        lines.iter().any(|l| l.contains("replica subscribed")),
        "{lines:#?}"
    );
}
