// The repliq console: asks the daemon for /api/v1/status every second and fills the tables.
// Plain DOM, no framework; every value goes in through textContent.
"use strict";

const STATUS_URL = "/api/v1/status";
const INTERVAL_MS = 1000;

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function count(n) {
  return n === null || n === undefined ? "-" : integer.format(n);
}

function rate(r) {
  return r === null || r === undefined ? "-" : r.toFixed(1);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let unit = 0;
  while (v >= 1024 && unit + 1 < units.length) {
    v /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${v.toFixed(1)} ${units[unit]}`;
}

function clock(unixMs) {
  return new Date(unixMs).toISOString().slice(11, 19);
}

// One cell: [text, field name (data-field), class].
function row(attrs, cells) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) {
    tr.dataset[k] = v;
  }
  for (const [text, field, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (field) td.dataset.field = field;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows, emptyText) {
  const table = document.getElementById(id);
  const body = table.tBodies[0];
  if (rows.length === 0) {
    const columns = table.tHead.rows[0].cells.length;
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns;
    td.className = "empty";
    td.textContent = emptyText;
    tr.appendChild(td);
    rows = [tr];
  }
  body.replaceChildren(...rows);
}

function queueState(q) {
  if (q.damaged) return ["damaged", "bad"];
  if (q.replication && q.replication.degraded) return ["degraded", "bad"];
  return ["ok", "ok"];
}

function render(s) {
  document.getElementById("node").textContent = s.node;
  document.title = `repliq · ${s.node}`;
  const ready = document.getElementById("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = `badge ${s.ready ? "ok" : "bad"}`;
  const volume = s.volume
    ? ` · volume ${bytes(s.volume.free_bytes)} free of ${bytes(s.volume.size_bytes)}`
    : "";
  document.getElementById("meta").textContent =
    `repliqd ${s.version} · ${clock(s.time_unix_ms)} UTC${volume}`;

  const queues = [];
  const consumers = [];
  const replicas = [];
  for (const q of s.queues) {
    const [state, stateClass] = queueState(q);
    queues.push(row({ queue: q.name }, [
      [q.name, "name"],
      [q.role ?? "-", "role"],
      [count(q.epoch), "epoch", "num"],
      [q.primary ?? "-", "primary"],
      [count(q.enqueued_records), "enqueued_records", "num"],
      [rate(q.enqueue_rate), "enqueue_rate", "num"],
      [count(q.segments), "segments", "num"],
      [bytes(q.disk_bytes), "disk_bytes", "num"],
      [state, "state", stateClass],
    ]));
    for (const c of q.consumers) {
      consumers.push(row({ queue: q.name, consumer: c.name }, [
        [q.name, "queue"],
        [c.name, "name"],
        [count(c.dequeued_records), "dequeued_records", "num"],
        [rate(c.dequeue_rate), "dequeue_rate", "num"],
        [count(c.backlog_records), "backlog_records", "num"],
      ]));
    }
    for (const r of q.replicas) {
      replicas.push(row({ queue: q.name, replica: r.name }, [
        [q.name, "queue"],
        [r.name, "name"],
        [r.up ? "up" : "down", "state", r.up ? "ok" : "bad"],
        [count(r.lag_records), "lag_records", "num"],
        [r.lag_seconds.toFixed(1), "lag_seconds", "num"],
        [count(r.replicated_records), "replicated_records", "num"],
        [bytes(r.replicated_bytes), "replicated_bytes", "num"],
        [count(r.lost), "lost", r.lost > 0 ? "num warn" : "num"],
        [r.error ?? "", "error", "error-text"],
      ]));
    }
  }
  fill("queues", queues, "no queues under the persistence path");
  fill("consumers", consumers, "no consumer cursors");
  fill("replicas", replicas, "this node streams no queue to replicas");
  fill("failovers", s.failovers.map((f) => row({ queue: f.queue, epoch: f.epoch }, [
    [clock(f.time_unix_ms), "time"],
    [f.queue, "queue"],
    [`${f.from_epoch} → ${f.epoch}`, "epoch", "num"],
    [`${f.previous_primary ?? "?"} → ${f.primary ?? "?"}`, "primary"],
    [count(f.epoch_start), "epoch_start", "num"],
  ])), "no failover seen since the daemon started");

  const section = document.getElementById("readiness-section");
  const list = document.getElementById("readiness");
  list.replaceChildren(...s.readiness.map((line) => {
    const li = document.createElement("li");
    li.textContent = line;
    return li;
  }));
  section.hidden = s.readiness.length === 0;
  document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  document.body.dataset.updated = String(s.time_unix_ms);
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const response = await fetch(STATUS_URL, { cache: "no-store" });
    if (!response.ok) {
      throw new Error(`${STATUS_URL} answered ${response.status}: ${await response.text()}`);
    }
    render(await response.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = `Cannot read the status (${e.message}); showing the last values.`;
    error.hidden = false;
    document.getElementById("ready").textContent = "disconnected";
    document.getElementById("ready").className = "badge bad";
  }
  setTimeout(poll, INTERVAL_MS);
}

poll();
