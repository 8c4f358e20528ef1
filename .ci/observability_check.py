#!/usr/bin/env python3
"""The dashboard and the alert rules against a real Prometheus scraping a real cluster.

Started by .ci/observability.sh, which builds the binaries and installs the tools. On loopback:
etcd, three repliqd nodes (synchronous, required_acks 1, failover by an etcd lease), a producer
and a consumer, and Prometheus (1 s scrapes and rule evaluations) loading
deploy/prometheus/repliq-rules.yaml. Then:

1. `promtool check metrics` on every node's /metrics (Prometheus text format) reports nothing;
2. a replica is SIGSTOPped: its lag is non-zero in Prometheus, RepliqReplicaDown becomes pending
   then firing (the rules are loaded with every `for:` hold shortened to 3 s); after SIGCONT the
   lag returns to 0 and the alert resolves;
3. the primary is SIGKILLed: another node takes the lease, the epoch grows, a producer writes on
   the new primary; the old primary restarts and rejoins;
4. every query of deploy/grafana/repliq.json (its variables substituted with `.*`) returns data
   over the run, and the panels' shapes hold: lag of the stopped replica above 0, an epoch
   change, a takeover counted.

Every wait is bounded; the script prints its figures and exits non-zero on the first failure.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

STARTED = time.monotonic()


def note(msg):
    print(f"observability: [{time.monotonic() - STARTED:5.1f}s] {msg}", flush=True)


def fail(msg):
    print(f"observability: FAIL: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, seconds, check):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.25)


def http_get(url, accept=None, timeout=5):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class Cluster:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.procs = {}
        self.logs = {}

    def spawn(self, name, argv, **kw):
        log = open(os.path.join(self.work, f"{name}.log"), "ab")
        self.logs[name] = log.name
        p = subprocess.Popen(argv, stderr=log, **kw)
        self.procs[name] = p
        return p

    def stop_all(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                    p.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    def tail_logs(self):
        for name, path in self.logs.items():
            try:
                lines = open(path, errors="replace").read().splitlines()[-15:]
            except OSError:
                continue
            print(f"---- last log lines of {name} ----", file=sys.stderr)
            for line in lines:
                print(line[:300], file=sys.stderr)


def prom_query(prom, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    status, body = http_get(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}")
    if status != 200:
        fail(f"Prometheus refused {expr!r}: {status} {body[:300]}")
    return json.loads(body)["data"]["result"]


def prom_range(prom, expr, start, end, step=1):
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    status, body = http_get(f"{prom}/api/v1/query_range?{urllib.parse.urlencode(params)}", timeout=20)
    if status != 200:
        fail(f"Prometheus refused {expr!r}: {status} {body[:300]}")
    return json.loads(body)["data"]["result"]


def alert_states(prom, name):
    status, body = http_get(f"{prom}/api/v1/alerts")
    if status != 200:
        return []
    return [
        (a["labels"], a["state"])
        for a in json.loads(body)["data"]["alerts"]
        if a["labels"].get("alertname") == name
    ]


def substitute(expr, rate_interval="5s"):
    for var in ("namespace", "node", "queue"):
        expr = expr.replace(f"${var}", ".*")
    return expr.replace("$__rate_interval", rate_interval)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--repliqd", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--promtool", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="repliq-obs.")
    cluster = Cluster(args, work)
    try:
        run(args, work, cluster)
    except SystemExit:
        cluster.tail_logs()
        raise
    finally:
        cluster.stop_all()
        subprocess.run(["rm", "-rf", work], check=False)
    note(f"passed in {time.monotonic() - STARTED:.0f}s")


def run(args, work, cluster):
    # The rules as shipped, but with every `for:` hold shortened to 3 s, so that an alert goes
    # from pending to firing within the run (promtool test rules checks the real holds).
    shipped = open(os.path.join(args.repo, "deploy/prometheus/repliq-rules.yaml")).read()
    rules = os.path.join(work, "repliq-rules.yaml")
    with open(rules, "w") as f:
        f.write(re.sub(r"(\n\s+for:) \w+\n", r"\1 3s\n", shipped))
    if shipped.count("for: ") != open(rules).read().count("for: 3s"):
        fail("could not shorten the rules' holds")
    dashboard = json.load(open(os.path.join(args.repo, "deploy/grafana/repliq.json")))

    # etcd
    client, peer = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{client}"
    cluster.spawn("etcd", [
        args.etcd, "--name", "obs", "--data-dir", os.path.join(work, "etcd"),
        "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"obs=http://127.0.0.1:{peer}",
    ], stdout=subprocess.DEVNULL)
    wait_for("etcd", 30, lambda: http_get(f"{endpoint}/health")[0] == 200)

    # three nodes
    names = ["a", "b", "c"]
    grpc = {n: free_port() for n in names}
    http = {n: free_port() for n in names}
    roots = {n: os.path.join(work, n) for n in names}
    configs = {}
    for n in names:
        peers = "".join(
            f"      - name: {p}\n        address: 127.0.0.1:{grpc[p]}\n" for p in names if p != n
        )
        configs[n] = os.path.join(work, f"{n}.yaml")
        with open(configs[n], "w") as f:
            f.write(
                "replication:\n  mode: synchronous\n  required_acks: 1\n  ack_timeout_ms: 1000\n"
                f"  discovery:\n    method: static\n    peers:\n{peers}"
                f"queue:\n  capacity: 1000000\n  persistence:\n    path: {roots[n]}\n"
                f"server:\n  grpc_listen: 127.0.0.1:{grpc[n]}\n  http_listen: 127.0.0.1:{http[n]}\n"
                "  shutdown_grace_ms: 2000\n"
                f"election:\n  backend: etcd\n  endpoints: [\"{endpoint}\"]\n  prefix: obs\n"
                "  lease_duration_ms: 3000\n  renew_deadline_ms: 1800\n  retry_period_ms: 500\n"
            )

    def start(n):
        p = cluster.spawn(n, [args.repliqd, "--config", configs[n], "--log-format", "json"],
                          env={**os.environ, "NODE_NAME": n, "REPLIQ_LOG": "info"},
                          stdout=subprocess.PIPE)
        line = p.stdout.readline().decode()
        if not line.startswith("repliqd listening"):
            fail(f"node {n} did not start: {line!r}")
        return p

    for n in names:
        start(n)
    note("etcd and nodes a, b, c started")

    # Prometheus
    prom_port = free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    targets = "".join(
        f"      - targets: ['127.0.0.1:{http[n]}']\n        labels: {{namespace: ci, node: {n}}}\n"
        for n in names
    )
    prom_config = os.path.join(work, "prometheus.yml")
    with open(prom_config, "w") as f:
        f.write(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            f"scrape_configs:\n  - job_name: repliq\n    static_configs:\n{targets}"
        )
    cluster.spawn("prometheus", [
        args.prometheus, f"--config.file={prom_config}",
        f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ], stdout=subprocess.DEVNULL)
    wait_for("Prometheus to be ready", 60, lambda: http_get(f"{prom}/-/ready")[0] == 200)
    t_start = time.time()

    # Load: a producer (~400 records/s) and a consumer on a's queue.
    queue_a = os.path.join(roots["a"], "orders")
    subprocess.run([args.worker, "create", queue_a, "1000000"], check=True,
                   stdout=subprocess.DEVNULL)
    cluster.spawn("producer-a", [args.worker, "produce", queue_a, "1", "100000", "2500"],
                  stdout=subprocess.DEVNULL)
    cluster.spawn("consumer-a", [args.worker, "consume", queue_a, "c1"],
                  stdout=subprocess.DEVNULL)
    wait_for("every node to be scraped", 60, lambda: len(prom_query(prom, 'up{job="repliq"} == 1')) == 3)
    wait_for("a to replicate to b and c", 60, lambda: len(prom_query(
        prom, 'repliq_replicated_records_total{queue="orders"} > 0')) == 2)
    wait_for("a to hold the lease", 60, lambda: prom_query(
        prom, 'repliq_election_leader{node="a", queue="orders"} == 1'))

    # 1. promtool check metrics on every node (Prometheus text format, as promtool reads it).
    for n in names:
        status, text = http_get(f"http://127.0.0.1:{http[n]}/metrics",
                                accept="text/plain;version=0.0.4")
        if status != 200:
            fail(f"/metrics of {n}: {status}")
        r = subprocess.run([args.promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            fail(f"promtool check metrics on {n}: {r.stdout.decode()}{r.stderr.decode()}")
        families = sum(1 for l in text.splitlines() if l.startswith("# TYPE "))
        note(f"promtool check metrics: node {n} clean ({families} families)")
    time.sleep(5)

    # 2. A stopped replica: lag, then the replica-down alert; both clear after it resumes.
    cluster.procs["c"].send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    note("SIGSTOP c")
    lag = wait_for("a non-zero lag of c in Prometheus", 60, lambda: prom_query(
        prom, 'max(repliq_replication_lag_records{queue="orders", replica="c"}) > 0'))
    note(f"lag of c while stopped: {lag[0]['value'][1]} records")
    lag_bytes = wait_for("a non-zero lag in bytes of c", 60, lambda: prom_query(
        prom, 'max(repliq_replication_lag_bytes{queue="orders", replica="c"}) > 0'))
    note(f"lag of c while stopped: {lag_bytes[0]['value'][1]} bytes")
    wait_for("RepliqReplicaDown for c to be pending", 60, lambda: [
        s for labels, s in alert_states(prom, "RepliqReplicaDown")
        if labels.get("replica") == "c" and s in ("pending", "firing")])
    note("RepliqReplicaDown for c: pending")
    wait_for("RepliqReplicaDown for c to fire", 60, lambda: [
        s for labels, s in alert_states(prom, "RepliqReplicaDown")
        if labels.get("replica") == "c" and s == "firing"])
    note("RepliqReplicaDown for c: firing")
    # The stopped replica's frames outlived the acknowledgement timeout: counted on the primary.
    timeouts = wait_for("an acknowledgement timeout of c to be counted", 60, lambda: prom_query(
        prom, 'max(repliq_replication_ack_timeouts_total{queue="orders", replica="c"}) > 0'))
    note(f"acknowledgement timeouts of c: {timeouts[0]['value'][1]}")
    cluster.procs["c"].send_signal(signal.SIGCONT)
    resumed_at = time.time()
    note("SIGCONT c")
    wait_for("c to catch up", 60, lambda: prom_query(
        prom, 'max(repliq_replication_lag_records{queue="orders", replica="c"}) == 0'))
    wait_for("RepliqReplicaDown to resolve", 60, lambda: not [
        s for labels, s in alert_states(prom, "RepliqReplicaDown") if labels.get("replica") == "c"])
    note("c caught up; RepliqReplicaDown resolved")

    # 3. Failover: the primary and its producer are killed; another node takes the lease.
    cluster.procs["producer-a"].kill()
    cluster.procs["consumer-a"].kill()
    cluster.procs["a"].kill()
    killed_at = time.time()
    note("SIGKILL a")
    def new_primary():
        r = prom_query(prom, 'repliq_queue_primary{queue="orders", node=~"b|c"} == 1 '
                       'and on (node) repliq_queue_epoch{queue="orders"} >= 2')
        return r[0]["metric"]["node"] if r else None
    new = wait_for("a new primary with epoch >= 2", 60, new_primary)
    note(f"{new} became primary {time.time() - killed_at:.1f}s after the kill (in Prometheus)")
    queue_new = os.path.join(roots[new], "orders")
    producers = iter(range(2, 50))

    def keep_producing():
        # A synchronous write times out (and the worker exits) while no replica of the new
        # primary has subscribed yet: start another producer then.
        p = cluster.procs.get("producer-new")
        if p is None or p.poll() is not None:
            cluster.spawn("producer-new", [args.worker, "produce", queue_new, str(next(producers)),
                                           "100000", "2500"], stdout=subprocess.DEVNULL)

    keep_producing()
    start("a")
    wait_for("a to rejoin as a replica", 60, lambda: keep_producing() or prom_query(
        prom, 'repliq_queue_primary{queue="orders", node="a"} == 0'))
    wait_for(f"{new} to replicate to a", 60, lambda: keep_producing() or prom_query(
        prom, f'rate(repliq_replicated_records_total{{node="{new}", queue="orders", replica="a"}}[5s]) > 0'))
    time.sleep(6)
    t_end = time.time()

    # 4. Every query of the dashboard returns data over the run.
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        q = var["query"]["query"]
        inner = q[len("label_values("):-1]
        selector, label = inner.rsplit(",", 1)
        params = urllib.parse.urlencode({"match[]": substitute(selector.strip())})
        status, body = http_get(f"{prom}/api/v1/label/{label.strip()}/values?{params}")
        values = json.loads(body)["data"] if status == 200 else []
        if not values:
            fail(f"variable {var['name']}: {q} has no values")
        note(f"variable {var['name']}: {values}")
    results = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = substitute(target["expr"])
            series = prom_range(prom, expr, t_start, t_end)
            points = sum(len(s["values"]) for s in series)
            if not points:
                fail(f"panel {panel['title']!r} query {target['refId']} returned no data: {expr}")
            results[(panel["title"], target["refId"])] = series
            note(f"panel {panel['title']!r} {target['refId']}: {len(series)} series, {points} points")

    # Shapes.
    def values_of(title, ref="A", match=None):
        out = []
        for s in results[(title, ref)]:
            if match and any(s["metric"].get(k) != v for k, v in match.items()):
                continue
            out += [(float(t), float(v)) for t, v in s["values"]]
        return out
    during = [v for t, v in values_of("Replication lag (records)", match={"replica": "c"})
              if stopped_at <= t <= resumed_at + 1]
    if not during or max(during) <= 0:
        fail(f"lag panel: no non-zero lag of c while it was stopped ({during[:5]})")
    epochs = [v for _, v in values_of("Epoch per queue", match={"queue": "orders"})]
    if not epochs or min(epochs) >= max(epochs):
        fail(f"epoch panel: no epoch change ({sorted(set(epochs))})")
    takeovers = [v for _, v in values_of("Failovers", match={"node": new})]
    if not takeovers or max(takeovers) < 1:
        fail(f"failover panel: no takeover counted on {new}")
    up_c = [v for t, v in values_of("Replica state", match={"replica": "c"})
            if stopped_at + 3 <= t <= resumed_at]
    if up_c and min(up_c) != 0:
        fail("replica state panel: c never 0 while stopped")
    note(f"shapes: max lag of c while stopped {max(during):.0f} records; epochs "
         f"{sorted(set(epochs))}; takeovers on {new} {max(takeovers):.0f}")
    note(f"{len(results)} panel queries returned data")


if __name__ == "__main__":
    main()
