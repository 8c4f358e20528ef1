//! `repliq top`'s frame: the status document as plain-text tables, numbers right-aligned, and
//! the HTTP GET that fetches the document (std only: the CLI needs no HTTP client crate).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::status::{QueueStatus, Status};

/// Why the status could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    /// The URL is not `http://HOST[:PORT][/PREFIX]`.
    Url(String),
    /// Connecting, sending or reading failed.
    Io(String, std::io::Error),
    /// The daemon answered something else than a status document.
    Response(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Url(why) => write!(f, "{why}"),
            FetchError::Io(what, e) => write!(f, "{what}: {e}"),
            FetchError::Response(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// `http://HOST[:PORT][/PREFIX]` split into (host, port, prefix without a trailing `/`).
fn split_url(url: &str) -> Result<(String, u16, String), FetchError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        FetchError::Url(format!(
            "--url {url:?}: only http://HOST[:PORT] is supported (the daemon's HTTP port has no TLS)"
        ))
    })?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = port.parse::<u16>().map_err(|_| {
                FetchError::Url(format!("--url {url:?}: the port {port:?} is not a number"))
            })?;
            (host, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(FetchError::Url(format!("--url {url:?}: no host")));
    }
    Ok((host.to_owned(), port, prefix.to_owned()))
}

/// GETs `url` + [`super::STATUS_PATH`] and reads the status document, each step bounded by
/// `timeout`.
///
/// # Errors
///
/// [`FetchError`] naming the URL and what failed.
pub fn fetch_status(url: &str, timeout: Duration) -> Result<Status, FetchError> {
    let (host, port, prefix) = split_url(url)?;
    let path = format!("{prefix}{}", super::STATUS_PATH);
    let io = |what: &str| {
        let what = format!("{what} {url}");
        move |e| FetchError::Io(what, e)
    };
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(io("resolving"))?
        .next()
        .ok_or_else(|| FetchError::Url(format!("--url {url:?}: {host} has no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io("connecting to"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io("configuring the connection to"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(io("sending to"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(io("reading from"))?;
    let body =
        http_body(&response).map_err(|why| FetchError::Response(format!("{url}{path}: {why}")))?;
    serde_json::from_slice(&body).map_err(|e| {
        FetchError::Response(format!(
            "{url}{path}: not a status document ({e}); is this a repliqd HTTP port?"
        ))
    })
}

/// The body of a complete HTTP/1.1 response with status 200 (plain or chunked).
fn http_body(response: &[u8]) -> Result<Vec<u8>, String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!(
            "answered {status_line:?}: {}",
            String::from_utf8_lossy(body).trim()
        ));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("a bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("a truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a truncated chunk")?;
    }
}

/// `1234567` as `1,234,567`.
#[must_use]
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with one decimal (`-` when not known yet).
#[must_use]
pub fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

/// Bytes in binary units with one decimal (`512 B`, `64.0 MiB`).
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `HH:MM:SS` UTC of a time in milliseconds since the Unix epoch.
#[must_use]
pub fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A table: a header row and rows of cells; columns listed in `right` are right-aligned.
struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|(h, _)| *h).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: Vec<&str>| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    l.push_str("  ");
                }
                if self.right[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if i + 1 < cells.len() {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(self.header.clone());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

fn queue_state(q: &QueueStatus) -> String {
    if q.damaged {
        return "damaged".to_owned();
    }
    match &q.replication {
        Some(r) if r.degraded => "degraded".to_owned(),
        _ => "ok".to_owned(),
    }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_owned())
}

/// The frame `repliq top` prints: a title line, then the queues, consumers, replicas, failovers
/// and readiness lines.
#[must_use]
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let volume = status.volume.as_ref().map_or(String::new(), |v| {
        format!(
            " · volume {} free of {}",
            bytes(v.free_bytes),
            bytes(v.size_bytes)
        )
    });
    out.push_str(&format!(
        "repliq node {} · repliqd {} · {} · {} UTC{volume}\n\n",
        status.node,
        status.version,
        if status.ready { "ready" } else { "NOT READY" },
        clock(status.time_unix_ms),
    ));
    let mut queues = Table::new(&[
        ("QUEUE", false),
        ("ROLE", false),
        ("EPOCH", true),
        ("PRIMARY", false),
        ("ENQUEUED", true),
        ("ENQ/S", true),
        ("SEGMENTS", true),
        ("DISK", true),
        ("STATE", false),
    ]);
    let mut consumers = Table::new(&[
        ("QUEUE", false),
        ("CONSUMER", false),
        ("DEQUEUED", true),
        ("DEQ/S", true),
        ("BACKLOG", true),
    ]);
    let mut replicas = Table::new(&[
        ("QUEUE", false),
        ("REPLICA", false),
        ("STATE", false),
        ("LAG", true),
        ("LAG S", true),
        ("ACKED", true),
        ("SENT", true),
        ("LOST", true),
        ("ERROR", false),
    ]);
    for q in &status.queues {
        queues.rows.push(vec![
            q.name.clone(),
            or_dash(q.role.clone()),
            or_dash(q.epoch.map(thousands)),
            or_dash(q.primary.clone()),
            thousands(q.enqueued_records),
            rate(q.enqueue_rate),
            thousands(q.segments),
            bytes(q.disk_bytes),
            queue_state(q),
        ]);
        for c in &q.consumers {
            consumers.rows.push(vec![
                q.name.clone(),
                c.name.clone(),
                thousands(c.dequeued_records),
                rate(c.dequeue_rate),
                thousands(c.backlog_records),
            ]);
        }
        for r in &q.replicas {
            replicas.rows.push(vec![
                q.name.clone(),
                r.name.clone(),
                if r.up { "up" } else { "DOWN" }.to_owned(),
                thousands(r.lag_records),
                format!("{:.1}", r.lag_seconds),
                thousands(r.replicated_records),
                bytes(r.replicated_bytes),
                thousands(r.lost),
                r.error.clone().unwrap_or_default(),
            ]);
        }
    }
    if status.queues.is_empty() {
        out.push_str("no queues under the persistence path\n");
    } else {
        queues.render(&mut out);
    }
    if !consumers.rows.is_empty() {
        out.push('\n');
        consumers.render(&mut out);
    }
    if !replicas.rows.is_empty() {
        out.push('\n');
        replicas.render(&mut out);
    }
    out.push('\n');
    if status.failovers.is_empty() {
        out.push_str("no failover seen since the daemon started\n");
    } else {
        let mut failovers = Table::new(&[
            ("FAILOVER AT", false),
            ("QUEUE", false),
            ("EPOCH", true),
            ("PRIMARY", false),
            ("FROM SEQ", true),
        ]);
        for f in &status.failovers {
            failovers.rows.push(vec![
                clock(f.time_unix_ms),
                f.queue.clone(),
                format!("{} → {}", f.from_epoch, f.epoch),
                format!(
                    "{} → {}",
                    f.previous_primary.as_deref().unwrap_or("?"),
                    f.primary.as_deref().unwrap_or("?")
                ),
                thousands(f.epoch_start),
            ]);
        }
        failovers.render(&mut out);
    }
    if !status.readiness.is_empty() {
        out.push('\n');
        for line in &status.readiness {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn urls_numbers_and_bodies() {
        assert_eq!(
            split_url("http://127.0.0.1:9100").unwrap(),
            ("127.0.0.1".to_owned(), 9100, String::new())
        );
        assert_eq!(
            split_url("http://node-a/repliq/").unwrap(),
            ("node-a".to_owned(), 80, "/repliq".to_owned())
        );
        assert!(matches!(
            split_url("https://a:1"),
            Err(FetchError::Url(m)) if m.contains("only http://")
        ));
        assert!(matches!(split_url("http://a:x"), Err(FetchError::Url(m)) if m.contains("port")));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(clock(3_723_000), "01:02:03");
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"abcde");
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(http_body(plain).unwrap(), b"{}");
        let e = http_body(b"HTTP/1.1 404 Not Found\r\n\r\nno route").unwrap_err();
        assert!(e.contains("404") && e.contains("no route"), "{e}");
    }
}
