#!/usr/bin/env python3
"""Seeded random fault schedules on a three-node repliqd container cluster, checked by repliq-check.

  fault_schedules.py schedule SEED [--duration S] [--schedules 1|2]
      print the schedule SEED draws (a replay prints the same one)
  fault_schedules.py summarize FILE
      totals of a --summary file: runs, verdicts, faults by kind, operations checked, anomalies
  fault_schedules.py run SEED... --image IMG --etcd-image IMG --bin-dir DIR [--duration S]
                     [--keep DIR] [--summary FILE] [--schedules 1|2]
                     [--mode synchronous|asynchronous|alternate]
      for each seed: a fresh cluster (etcd and repliqd nodes a, b, c on a private Docker network,
      synchronous with required_acks 1 -- or asynchronous: --mode, `alternate` makes the even
      seeds asynchronous --, election on etcd), producers and consumers writing a history,
      the schedule, then everything healed, the journals read, each node's consumer drained, and
      `repliq-check` run. Prints per seed one line
      `seed S schedule [...] history N ops verdict valid|INVALID ...`; exit code 1 if any seed's
      verdict is INVALID (or the run broke). --summary appends one JSON object per seed to FILE.

How a fault is made (the nodes are containers; "primary" and "replica" are resolved when the
fault starts, from the queues' replication.json):
  kill       docker kill of the node and of the producers on its volume; docker start after D s
  pause      docker pause of the node and its producers for D s (longer than the 3 s lease)
  partition  docker network disconnect of the node for D s, then connect
  restart    docker restart of the node (SIGTERM, drain, start again)
  etcd-stop  docker stop of etcd for D s (its data kept in a host directory), then start
  oneway     (schedules 2) the node receives nothing from the other two nodes for D s (iptables
             DROP on INPUT in its network namespace, by nsenter from the host); what it sends
             still arrives, and etcd still reaches it both ways
  etcd-cut   (schedules 2) the node and etcd cannot reach each other for D s (iptables DROP both
             ways in the node's namespace); its peers still reach it
  disk-full  (schedules 3) the node's file system is filled for D s: each node's directory is a
             tmpfs of DISK_MB MiB (mounted by this script, as root), filled by a file of all its
             free space, removed after D s

Schedules 3 (REPLIQ_FAULT_SCHEDULES=3) add disk-full to schedules 2's kinds. Schedules 1
(REPLIQ_FAULT_SCHEDULES=1) draw from the first five kinds only: the schedules the seeds
found before the one-way faults existed (docs/CHECKER.md) replay with it.

Producers (`history_producer`, in containers with no network sharing a node's volume, as
application pods share a node's files) run on whichever node is the primary of the highest
epoch; a producer that is fenced stops, and a new one (a new producer id) starts on the new
primary. Consumers (`history_consumer`) run on every node, primary or replica, each with the
durable cursor `c-NODE` of its node (cursors are not replicated), restarted when killed. After
the schedule, with the journals converged, a consumer of each node's cursor reads its node's
journal to the end (`drain`); the checker then checks that each of the three received every
record (`--drained`). The clients' stdout is the history (docs/CHECKER.md).

Needs: docker (engine running), python3; the images and binaries .ci/fault-schedules.sh builds.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

LEASE_MS = 3000
ACK_TIMEOUT_MS = 2000
NODES = ["a", "b", "c"]
QUEUE = "history"
KINDS = ["kill", "pause", "partition", "restart", "etcd-stop"]
# Schedules 2: the one-way faults too (the kinds are drawn with the same generator, so a seed
# draws other schedules under 1 and 2).
KINDS_2 = KINDS + ["oneway", "etcd-cut"]
# Schedules 3: a full disk too (each node's directory a tmpfs of DISK_MB MiB).
KINDS_3 = KINDS_2 + ["disk-full"]
DISK_MB = 512
FILLER = ".disk-filler"
HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", "65532:65532"]


class Broken(Exception):
    """The run itself failed (not the checked system): a container did not start, a timeout."""


def draw_schedule(seed, duration, version=2):
    """The faults of one run: (start_s, kind, target, length_s), one after another."""
    rng = random.Random(seed)
    faults = []
    t = rng.uniform(1.0, 3.0)
    while True:
        kind = rng.choice({1: KINDS, 2: KINDS_2}.get(version, KINDS_3))
        if kind == "etcd-stop":
            target = "etcd"
        else:  # the primary twice as often as either replica
            target = rng.choice(["primary", "primary", "replica0", "replica1"])
        if kind == "pause":
            length = rng.uniform(LEASE_MS / 1000 + 0.5, LEASE_MS / 1000 + 4.0)
        elif kind == "restart":
            length = 0.0
        else:
            length = rng.uniform(1.0, 8.0)
        if t + length > duration:
            break
        faults.append((round(t, 1), kind, target, round(length, 1)))
        t += length + rng.uniform(0.5, 4.0)
    return faults


def fmt_schedule(faults):
    return "[" + ", ".join(f"{t}s {k} {tg}" + (f" {d}s" if d else "") for t, k, tg, d in faults) + "]"


def sh(*args, check=True, timeout=60, capture=True):
    r = subprocess.run(args, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Broken(f"{' '.join(args[:4])}...: exit {r.returncode}: {(r.stderr or '')[-300:]}")
    return r.stdout if capture else ""


def give_to_containers(d):
    """The containers run as 65532:65532: their directories are theirs (or anyone's, as a user)."""
    try:
        os.chown(d, 65532, 65532)
    except PermissionError:
        os.chmod(d, 0o777)


def role(work, node):
    try:
        with open(os.path.join(work, node, QUEUE, "replication.json")) as f:
            s = json.load(f)
        return s.get("role"), int(s.get("epoch", 0))
    except (OSError, ValueError):
        return None, 0


class Cluster:
    def __init__(self, seed, args, run_id):
        self.seed, self.args, self.run_id = seed, args, run_id
        self.mode = mode_of(seed, args.mode)
        self.work = tempfile.mkdtemp(prefix=f"repliq-faults-{seed}-")
        os.chmod(self.work, 0o755)
        self.net = f"{run_id}-net"
        self.containers = []
        self.down = set()  # nodes killed, paused or disconnected (no producer starts there)
        self.lock = threading.Lock()
        self.producers = []  # (container, node)
        self.next_producer = 1
        self.consumers = []  # (container, node): history_consumer with cursor c-NODE
        self.next_consumer = 1
        self.stop_producers = threading.Event()
        self.log = []
        self.mounts = []  # tmpfs mounts of schedules 3 (unmounted at cleanup)

    def name(self, n):
        return f"{self.run_id}-{n}"

    def note(self, text):
        self.log.append(f"[{time.monotonic() - self.t0:6.1f}s] {text}")

    def start(self):
        self.t0 = time.monotonic()
        sh("docker", "network", "create", "--internal", self.net)
        etcd_dir = os.path.join(self.work, "etcd")
        os.makedirs(etcd_dir)
        give_to_containers(etcd_dir)
        etcd = self.name("etcd")
        self.containers.append(etcd)
        sh("docker", "run", "-d", "--name", etcd, "--network", self.net, *HARDENED,
           "-v", f"{etcd_dir}:/data", self.args.etcd_image,
           "--name", "etcd", "--data-dir", "/data/etcd",
           "--listen-client-urls", "http://0.0.0.0:2379",
           "--advertise-client-urls", f"http://{etcd}:2379",
           "--listen-peer-urls", "http://127.0.0.1:2380",
           "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
           "--initial-cluster", "etcd=http://127.0.0.1:2380")
        self.wait_log(etcd, "ready to serve client requests", 15)
        members = "".join(f"      - name: {n}\n        address: {self.name(n)}:31337\n" for n in NODES)
        replication = (f"  mode: synchronous\n  required_acks: 1\n  ack_timeout_ms: {ACK_TIMEOUT_MS}\n"
                       if self.mode == "synchronous" else "  mode: asynchronous\n")
        cfg = os.path.join(self.work, "config.yaml")
        with open(cfg, "w") as f:
            f.write(f"""replication:
{replication}  discovery:
    method: static
    members:
{members}queue:
  capacity: 10000000
  persistence:
    path: /var/lib/repliq
server:
  grpc_listen: 0.0.0.0:31337
  http_listen: 0.0.0.0:9100
  shutdown_grace_ms: 2000
election:
  backend: etcd
  endpoints: ["http://{etcd}:2379"]
  prefix: {self.run_id}
  lease_duration_ms: {LEASE_MS}
  renew_deadline_ms: 1800
  retry_period_ms: 500
""")
        os.chmod(cfg, 0o644)
        for n in NODES:
            d = os.path.join(self.work, n)
            os.makedirs(d)
            if self.args.schedules >= 3:  # a file system of its own, to fill
                sh("mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", d)
                self.mounts.append(d)
            give_to_containers(d)
            c = self.name(n)
            self.containers.append(c)
            sh("docker", "run", "-d", "--name", c, "--network", self.net, *HARDENED,
               "-e", f"NODE_NAME={n}", "-v", f"{d}:/var/lib/repliq",
               "-v", f"{cfg}:/etc/repliq/config.yaml:ro", self.args.image)
        for n in NODES:
            self.wait_log(self.name(n), "repliqd listening", 15)

    def wait_log(self, container, text, secs):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            r = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
            if text in r.stdout or text in r.stderr:
                return
            time.sleep(0.2)
        raise Broken(f"{container}: no '{text}' within {secs} s")

    # ---- producers -------------------------------------------------------------------------
    def start_producer(self, node, secs):
        with self.lock:
            pid = self.next_producer
            self.next_producer += 1
        c = f"{self.run_id}-p{pid}"
        self.containers.append(c)
        with self.lock:
            self.producers.append((c, node))
        sh("docker", "run", "-d", "--name", c, "--network", "none", *HARDENED,
           "-v", f"{os.path.join(self.work, node)}:/var/lib/repliq",
           "-v", f"{self.args.bin_dir}/history_producer:/usr/local/bin/history_producer:ro",
           "--entrypoint", "/usr/local/bin/history_producer", self.args.image,
           f"/var/lib/repliq/{QUEUE}", node, str(pid), "100000000", str(max(1, int(secs))),
           str(self.args.interval_ms))
        self.note(f"producer {pid} on {node}")
        return c

    def start_consumer(self, node, secs, drain=False):
        with self.lock:
            cid = self.next_consumer
            self.next_consumer += 1
        c = f"{self.run_id}-c{cid}"
        self.containers.append(c)
        with self.lock:
            self.consumers.append((c, node))
        sh("docker", "run", "-d", "--name", c, "--network", "none", *HARDENED,
           "-v", f"{os.path.join(self.work, node)}:/var/lib/repliq",
           "-v", f"{self.args.bin_dir}/history_consumer:/usr/local/bin/history_consumer:ro",
           "--entrypoint", "/usr/local/bin/history_consumer", self.args.image,
           f"/var/lib/repliq/{QUEUE}", node, f"c-{node}", str(max(1, int(secs))),
           *(["drain"] if drain else []))
        self.note(f"consumer {cid} on {node}" + (" (drain)" if drain else ""))
        return c

    def running(self, c):
        r = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", c],
                           capture_output=True, text=True)
        return r.stdout.strip() == "true"

    def producers_on(self, node):
        with self.lock:
            return [c for c, n in self.producers if n == node]

    def clients_on(self, node):
        """Producers and consumers sharing the node's volume (they die and stall with it)."""
        with self.lock:
            return [c for c, n in self.producers + self.consumers if n == node]

    def primary(self):
        """The node that is primary of the highest epoch by its replication.json, or None."""
        best = None
        for n in NODES:
            r, e = role(self.work, n)
            if r == "primary" and (best is None or e > best[1]):
                best = (n, e)
        return best[0] if best else None

    def producer_loop(self, until):
        """Keeps one producer running on the current primary, and one consumer on every node,
        until `until` (monotonic)."""
        while not self.stop_producers.is_set() and time.monotonic() < until - 1:
            p = self.primary()
            with self.lock:
                blocked = p is None or p in self.down
                down = set(self.down)
            if not blocked and not any(self.running(c) for c in self.producers_on(p)):
                try:
                    self.start_producer(p, until - time.monotonic())
                except Broken as e:
                    self.note(f"producer on {p} did not start: {e}")
            for n in NODES:
                with self.lock:
                    mine = [c for c, m in self.consumers if m == n]
                if n not in down and not any(self.running(c) for c in mine):
                    try:
                        self.start_consumer(n, until - time.monotonic())
                    except Broken as e:
                        self.note(f"consumer on {n} did not start: {e}")
            time.sleep(0.3)

    # ---- faults ----------------------------------------------------------------------------
    def resolve(self, target):
        p = self.primary()
        if target == "primary" and p:
            return p
        others = [n for n in NODES if n != p]
        # "replicaK": the K-th of the other two nodes (by name), whatever their state.
        return others[int(target[-1]) % len(others)] if target.startswith("replica") else others[0]

    def fault(self, kind, target, length):
        if kind == "etcd-stop":
            etcd = self.name("etcd")
            self.note(f"etcd-stop {length}s")
            sh("docker", "stop", "-t", "1", etcd)
            time.sleep(length)
            sh("docker", "start", etcd)
            self.note("etcd started")
            return
        node = self.resolve(target)
        c = self.name(node)
        prods = [p for p in self.clients_on(node) if self.running(p)]
        self.note(f"{kind} {target}={node}" + (f" {length}s" if length else ""))
        if kind == "kill":
            with self.lock:
                self.down.add(node)
            sh("docker", "kill", c, *prods, check=False)
            time.sleep(length)
            sh("docker", "start", c)
            with self.lock:
                self.down.discard(node)
        elif kind == "pause":
            with self.lock:
                self.down.add(node)
            sh("docker", "pause", c)
            for p in prods:  # a producer may have stopped meanwhile
                sh("docker", "pause", p, check=False)
            time.sleep(length)
            sh("docker", "unpause", c)
            for p in prods:
                sh("docker", "unpause", p, check=False)
            with self.lock:
                self.down.discard(node)
        elif kind == "partition":
            with self.lock:
                self.down.add(node)
            sh("docker", "network", "disconnect", self.net, c)
            time.sleep(length)
            sh("docker", "network", "connect", self.net, c)
            with self.lock:
                self.down.discard(node)
        elif kind == "restart":
            sh("docker", "restart", "-t", "5", c, timeout=30)
        elif kind == "disk-full":
            filler = os.path.join(self.work, node, FILLER)
            st = os.statvfs(os.path.join(self.work, node))
            free = st.f_bavail * st.f_frsize
            fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, max(free - 4096, 4096))
            except OSError:
                pass  # whatever it got: the disk is as full as it can be made
            finally:
                os.close(fd)
            self.note(f"disk-full {node}: {free >> 20} MiB taken")
            time.sleep(length)
            os.remove(filler)
        elif kind in ("oneway", "etcd-cut"):
            if kind == "oneway":  # what the other nodes send is dropped; what it sends arrives
                rules = [["INPUT", "-s", self.ip(self.name(n))] for n in NODES if n != node]
            else:  # cut from etcd both ways, its peers still reach it
                etcd_ip = self.ip(self.name("etcd"))
                rules = [["INPUT", "-s", etcd_ip], ["OUTPUT", "-d", etcd_ip]]
            pid = self.pid(c)
            for r in rules:
                self.iptables(pid, "-I", r)
            time.sleep(length)
            for r in rules:  # a node that died meanwhile took its namespace and rules along
                self.iptables(pid, "-D", r, check=False)
        self.note(f"{kind} {node} over")

    def ip(self, container):
        ip = sh("docker", "inspect", "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).strip()
        if not ip:
            raise Broken(f"{container} has no address")
        return ip

    def pid(self, container):
        pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", container).strip()
        if pid in ("", "0"):
            raise Broken(f"{container} is not running")
        return pid

    def iptables(self, pid, op, rule, check=True):
        """One rule in the network namespace of process `pid` (a container's)."""
        sh("nsenter", "-t", pid, "-n", "iptables", op, rule[0], *rule[1:], "-j", "DROP",
           check=check)

    # ---- the end ---------------------------------------------------------------------------
    def cat(self, node, out):
        path = os.path.join(self.work, node, QUEUE)
        with open(out, "w") as f:
            r = subprocess.run([f"{self.args.bin_dir}/repliq", "cat", path], stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise Broken(f"repliq cat on {node}: {r.stderr[-300:]}")
        with open(out) as f:
            first = f.readline()
        if first and not first.startswith("{"):
            # Seen in long runs: a replica created by a Hello sent before the producer had
            # written schema.json never gets one (docs/CHECKER.md, "Found so far").
            raise Broken(f"{node}'s queue has no schema.json: `repliq cat` printed raw records")

    def converge(self, secs):
        """Waits until one primary and the replicas' journals equal the primary's; returns
        (primary, milliseconds) or (primary, None) if not within `secs`."""
        t = time.monotonic()
        deadline = t + secs
        p = None
        while time.monotonic() < deadline:
            p = self.primary()
            if p is not None:
                cats = {}
                for n in [x for x in NODES if x != p] + [p]:
                    out = os.path.join(self.work, f"conv-{n}.jsonl")
                    self.cat(n, out)
                    with open(out) as f:
                        cats[n] = f.read()
                if all(cats[n] == cats[p] for n in NODES) and all(
                        role(self.work, n)[0] == "replica" for n in NODES if n != p):
                    return p, int((time.monotonic() - t) * 1000)
            time.sleep(0.5)
        return p, None

    def cleanup(self, keep):
        if keep:  # the daemons' logs of a failed seed, before their containers go
            os.makedirs(keep, exist_ok=True)
            for n in NODES + ["etcd"]:
                with open(os.path.join(keep, f"log-{n}.txt"), "w") as f:
                    subprocess.run(["docker", "logs", self.name(n)], stdout=f,
                                   stderr=subprocess.STDOUT)
        for c in self.containers:
            subprocess.run(["docker", "rm", "-f", "-v", c], capture_output=True)
        subprocess.run(["docker", "network", "rm", self.net], capture_output=True)
        for d in self.mounts:
            subprocess.run(["umount", d], capture_output=True)
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in os.listdir(self.work):
                if f.endswith(".jsonl") or f.endswith(".txt"):
                    shutil.copy(os.path.join(self.work, f), keep)
        shutil.rmtree(self.work, ignore_errors=True)


def run_seed(seed, args):
    faults = draw_schedule(seed, args.duration, args.schedules)
    run_id = f"rqfs-{os.getpid()}-{seed}"
    cl = Cluster(seed, args, run_id)
    result = {"seed": seed, "schedule": fmt_schedule(faults), "faults": [f[1] for f in faults],
              "mode": mode_of(seed, args.mode)}
    try:
        cl.start()
        # The first producer creates the queue on a; the election makes a node primary of it.
        until = time.monotonic() + args.duration + 6
        cl.start_producer("a", args.duration + 6)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if cl.primary() and all(role(cl.work, n)[0] for n in NODES):
                break
            time.sleep(0.2)
        else:
            raise Broken("the queue did not reach all three nodes within 20 s")
        loop = threading.Thread(target=cl.producer_loop, args=(until,), daemon=True)
        loop.start()
        t0 = time.monotonic()
        for start, kind, target, length in faults:
            time.sleep(max(0.0, t0 + start - time.monotonic()))
            cl.fault(kind, target, length)
        # Every fault is healed; the producers run out their time on the healed cluster.
        time.sleep(max(0.0, until - time.monotonic()))
        cl.stop_producers.set()
        loop.join(10)
        for c, _ in list(cl.producers) + list(cl.consumers):
            subprocess.run(["docker", "wait", c], capture_output=True, timeout=30)
        primary, conv_ms = cl.converge(args.converge_secs)
        result["converged_ms"] = conv_ms
        if primary is None:
            raise Broken("no primary after the schedule")
        replicas = [n for n in NODES if n != primary]
        for n in replicas + [primary]:  # replicas first: one can never be ahead of the primary
            cl.cat(n, os.path.join(cl.work, f"final-{n}.jsonl"))
        # Every node's cursor read to the end of its (converged) journal: these consumers must
        # have received every record of the primary's.
        drains = {n: cl.start_consumer(n, 60, drain=True) for n in NODES}
        drained = []
        for n, c in drains.items():
            code = subprocess.run(["docker", "wait", c], capture_output=True, text=True,
                                  timeout=90).stdout.strip()
            if code == "0":
                drained.append(f"c-{n}")
            else:
                r = subprocess.run(["docker", "logs", c], capture_output=True, text=True)
                raise Broken(f"the drain of c-{n} exited {code}: {r.stderr.strip()[-300:]}")
        histories = []
        for c, _ in cl.producers + cl.consumers:
            h = os.path.join(cl.work, f"history-{c.rsplit('-', 1)[1]}.jsonl")
            with open(h, "w") as f:
                subprocess.run(["docker", "logs", c], stdout=f, stderr=subprocess.DEVNULL)
            histories.append(h)
        cmd = [f"{args.bin_dir}/repliq-check", "--primary",
               f"{primary}={cl.work}/final-{primary}.jsonl"]
        for n in replicas:
            cmd += ["--replica", f"{n}={cl.work}/final-{n}.jsonl"]
        for d in drained:
            cmd += ["--drained", d]
        if cl.mode == "asynchronous":
            # Acknowledged means committed on the primary: a failover may set some aside.
            cmd.append("--asynchronous")
        r = subprocess.run(cmd + histories, capture_output=True, text=True, timeout=120)
        with open(os.path.join(cl.work, "check.txt"), "w") as f:
            f.write(r.stdout + r.stderr)
        summary = (r.stdout.strip().splitlines() or ["verdict broken (no output)"])[-1]
        if r.returncode == 2:
            raise Broken(f"repliq-check: {r.stderr.strip()[-300:]}")
        result["verdict"] = "valid" if r.returncode == 0 else "INVALID"
        result["check"] = summary
        result["ops"] = sum(1 for h in histories for _ in open(h))
        result["producers"] = len(cl.producers)
        result["consumers"] = len(cl.consumers)
        result["primary"] = primary
        if r.returncode != 0:
            result["anomalies"] = r.stdout[-4000:]
    except (Broken, subprocess.TimeoutExpired) as e:
        result["verdict"] = "BROKEN"
        result["error"] = str(e)
    finally:
        result["events"] = cl.log
        bad = result.get("verdict") != "valid" or result.get("converged_ms") is None
        keep = os.path.join(args.keep, f"seed-{seed}") if (args.keep and bad) else None
        if keep:
            os.makedirs(keep, exist_ok=True)
            with open(os.path.join(keep, "events.txt"), "w") as f:
                f.write("\n".join(cl.log) + "\n")
        cl.cleanup(keep)
    return result


def mode_of(seed, mode):
    """The replication mode of SEED's cluster."""
    if mode == "alternate":
        return "asynchronous" if seed % 2 == 0 else "synchronous"
    return mode


def summarize(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    verdicts, faults, anomalies = {}, {}, {}
    ops = enq = ok = unknown = deq = acks = redeliveries = lost_unreplicated = 0
    modes = {}
    conv = [r["converged_ms"] for r in runs if r.get("converged_ms") is not None]
    for r in runs:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        for k in r["faults"]:
            faults[k] = faults.get(k, 0) + 1
        words = r.get("check", "").split()
        field = lambda name: int(words[words.index(name) + 1]) if name in words else 0
        ops += field("ops")
        enq += field("enqueues")
        ok += field("ok")
        unknown += field("unknown")
        deq += field("dequeues")
        acks += field("acks")
        redeliveries += field("redeliveries")
        lost_unreplicated += field("lost-unreplicated")
        mode = r.get("mode", "synchronous")
        modes[mode] = modes.get(mode, 0) + 1
        for w in words:
            if "=" in w:
                k, n = w.split("=", 1)
                anomalies[k] = anomalies.get(k, 0) + int(n)
    print(f"runs {len(runs)} verdicts {verdicts} not-converged "
          f"{sum(1 for r in runs if r.get('converged_ms') is None)}")
    print(f"modes {dict(sorted(modes.items()))}")
    print(f"faults {sum(faults.values())} by kind {dict(sorted(faults.items()))}")
    print(f"operations checked {ops} (enqueues {enq}: ok {ok}, unknown {unknown}; "
          f"dequeues {deq}, acks {acks}, redeliveries before the ack {redeliveries}; "
          f"acknowledged then set aside by a failover on asynchronous queues {lost_unreplicated})")
    print(f"anomalies {sum(anomalies.values())} {anomalies}")
    if conv:
        conv.sort()
        print(f"convergence after the last fault: median {conv[len(conv) // 2]} ms, max {conv[-1]} ms")
    bad = [r["seed"] for r in runs if r["verdict"] != "valid"]
    if bad:
        print(f"seeds not valid: {bad}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schedule")
    s.add_argument("seed", type=int)
    s.add_argument("--duration", type=float, default=20)
    s.add_argument("--schedules", type=int, choices=[1, 2, 3], default=2)
    m = sub.add_parser("summarize")
    m.add_argument("file")
    r = sub.add_parser("run")
    r.add_argument("seeds", type=int, nargs="+")
    r.add_argument("--image", required=True)
    r.add_argument("--etcd-image", required=True)
    r.add_argument("--bin-dir", required=True)
    r.add_argument("--duration", type=float, default=20)
    r.add_argument("--interval-ms", type=int, default=2)
    r.add_argument("--converge-secs", type=float, default=30)
    r.add_argument("--keep", default=None)
    r.add_argument("--summary", default=None)
    r.add_argument("--schedules", type=int, choices=[1, 2, 3], default=2,
                   help="1: the first five fault kinds only (seeds found before the one-way faults)")
    r.add_argument("--mode", choices=["synchronous", "asynchronous", "alternate"],
                   default="synchronous",
                   help="the queues' replication; alternate: even seeds asynchronous")
    r.add_argument("--budget-secs", type=float, default=None,
                   help="start no further seed after this many seconds (long runs)")
    a = ap.parse_args()
    if a.cmd == "schedule":
        print(fmt_schedule(draw_schedule(a.seed, a.duration, a.schedules)))
        return 0
    if a.cmd == "summarize":
        return summarize(a.file)
    failed = 0
    began = time.monotonic()
    for seed in a.seeds:
        if a.budget_secs is not None and time.monotonic() - began > a.budget_secs:
            print(f"budget of {a.budget_secs:g} s spent: stopping before seed {seed}", flush=True)
            break
        t = time.monotonic()
        res = run_seed(seed, a)
        res["secs"] = round(time.monotonic() - t, 1)
        conv = res.get("converged_ms")
        print(f"seed {seed} ({res['mode']}) schedule {res['schedule']} history {res.get('ops', 0)} ops "
              f"({res.get('producers', 0)} producers, {res.get('consumers', 0)} consumers) converged "
              f"{'in %d ms' % conv if conv is not None else 'NOT within %g s' % a.converge_secs} "
              f"{res.get('check', 'verdict ' + res['verdict'])} [{res['secs']} s]", flush=True)
        if res["verdict"] != "valid" or conv is None:
            failed += 1
            print(f"  seed {seed}: {res.get('error', '')}{res.get('anomalies', '')}", flush=True)
            for ev in res["events"]:
                print(f"  {ev}", flush=True)
            print(f"  replay: bash .ci/fault-schedules.sh {seed}", flush=True)
        if a.summary:
            with open(a.summary, "a") as f:
                f.write(json.dumps(res) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
