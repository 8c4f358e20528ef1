#!/usr/bin/env python3
"""Data checks of .ci/container-cluster.sh, reading what the containers left on the host.

  role DIR                          print `ROLE EPOCH` of the queue at DIR (replication.json)
  wait-primary SECS DIR... [--above E]
                                    wait (bounded) until exactly one DIR is primary of an epoch
                                    >= 2 (> E with --above); print `INDEX MILLISECONDS`
  acked LOG...                      print the (seq, id) pairs of the ACK lines of producer logs
  check-acked CAT ACKS              every acknowledged (seq, id) is in CAT (a `repliq cat`
                                    output) at the same seq; no id twice; seqs contiguous;
                                    bodies intact. Print the counts
  check-absent CAT MIN_ID           no message with id >= MIN_ID in CAT
  same-records CAT CAT              the two outputs hold the same records (seq, time, message)
  check-remote CAT FIRST_ID PER LOG...
                                    remote producer i (LOG i, ids FIRST_ID + i*10000 ..+PER):
                                    every ACK seq id is at seq in CAT, every ACKDUP id in CAT;
                                    its ids once each, in its order; all PER present. Print counts

Every failure is one line on stderr naming what and where, and exit code 1.
"""
import json
import os
import sys
import time


def fail(msg):
    print(f"container-cluster: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def role(qdir):
    try:
        with open(os.path.join(qdir, "replication.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None, 0
    return state.get("role"), int(state.get("epoch", 0))


def body(ident):
    # Must match `order` in tests/src/cluster.rs (both producers of the test use it).
    return [(ident ^ i) & 0xFF for i in range(ident % 41)]


def records(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                fail(f"{path}:{n}: not JSON ({e}): {line[:120]}")
    return out


def check_remote(cat, first_id, per, logs):
    recs = records(cat)
    at_seq = {r["seq"]: r["message"]["id"] for r in recs}
    acked = dup_acked = retried = 0
    for i, log in enumerate(logs):
        base = first_id + i * 10000
        mine = [(r["seq"], r["message"]) for r in recs if base <= r["message"]["id"] < base + 10000]
        ids = [m["id"] for _, m in mine]
        for seq, m in mine:
            if m.get("body") != body(m["id"]):
                fail(f"{cat}: seq {seq}: the body of id {m['id']} is damaged")
        if len(set(ids)) != len(ids):
            twice = sorted({x for x in ids if ids.count(x) > 1})
            fail(f"{cat}: producer {i}: ids written twice: {twice[:10]}")
        if ids != sorted(ids):
            fail(f"{cat}: producer {i}: out of order: {ids[:20]}")
        if ids != list(range(base, base + per)):
            missing = sorted(set(range(base, base + per)) - set(ids))
            extra = sorted(set(ids) - set(range(base, base + per)))
            fail(f"{cat}: producer {i}: {len(missing)} of {per} missing, first {missing[:10]}; "
                 f"{len(extra)} never sent, first {extra[:10]}")
        present = set(ids)
        with open(log) as f:
            for line in f:
                parts = line.split()
                if parts[:1] == ["ACK"] and len(parts) == 3:
                    seq, ident = int(parts[1]), int(parts[2])
                    acked += 1
                    if at_seq.get(seq) != ident:
                        fail(f"{cat}: {log}: acknowledged id {ident} at seq {seq}, found {at_seq.get(seq)}")
                elif parts[:1] == ["ACKDUP"] and len(parts) == 2:
                    dup_acked += 1
                    if int(parts[1]) not in present:
                        fail(f"{cat}: {log}: id {parts[1]} acknowledged as held is missing")
                elif parts[:1] == ["RETRY"]:
                    retried += 1
    print(f"{len(logs)} producers, {acked + dup_acked} acknowledged ({dup_acked} as already held), "
          f"lost 0, duplicated 0, each producer's in order; {retried} retries")


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "role":
        r, e = role(args[0])
        print(f"{r} {e}")
    elif cmd == "wait-primary":
        bound, dirs, above = float(args[0]), args[1:], 1
        if "--above" in dirs:
            at = dirs.index("--above")
            above, dirs = int(dirs[at + 1]), dirs[:at] + dirs[at + 2:]
        t0 = time.monotonic()
        while time.monotonic() - t0 < bound:
            primaries = [i for i, d in enumerate(dirs) if role(d)[0] == "primary" and role(d)[1] > above]
            if len(primaries) > 1:
                fail(f"two primaries: {[dirs[i] for i in primaries]}")
            if primaries:
                print(f"{primaries[0]} {int((time.monotonic() - t0) * 1000)}")
                return
            time.sleep(0.02)
        fail(f"no new primary among {dirs} within {bound} s")
    elif cmd == "acked":
        for log in args:
            with open(log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == "ACK":
                        print(parts[1], parts[2])
    elif cmd == "check-acked":
        cat, acks = args
        recs = records(cat)
        by_seq = {}
        ids = {}
        prev = None
        for r in recs:
            seq, msg = r["seq"], r["message"]
            if prev is not None and seq != prev + 1:
                fail(f"{cat}: sequence {prev} is followed by {seq}")
            prev = seq
            ident = msg["id"]
            if ident in ids:
                fail(f"{cat}: id {ident} at seq {ids[ident]} and again at seq {seq}")
            ids[ident] = seq
            if msg.get("body") != body(ident):  # `repliq cat` renders bytes as a list of numbers
                fail(f"{cat}: seq {seq}: the body of id {ident} is damaged: {msg.get('body')!r}")
            by_seq[seq] = ident
        n = 0
        missing = []
        with open(acks) as f:
            for line in f:
                seq, ident = map(int, line.split())
                n += 1
                if by_seq.get(seq) != ident:
                    missing.append((seq, ident, by_seq.get(seq)))
        if missing:
            fail(f"{cat}: {len(missing)} of {n} acknowledged messages missing or replaced, "
                 f"first (seq, id, found): {missing[:5]}")
        print(f"acknowledged {n} lost 0 duplicated 0 records {len(recs)}")
    elif cmd == "check-absent":
        cat, min_id = args[0], int(args[1])
        bad = [(r["seq"], r["message"]["id"]) for r in records(cat) if r["message"]["id"] >= min_id]
        if bad:
            fail(f"{cat}: {len(bad)} old-epoch writes (id >= {min_id}) accepted, first {bad[:5]}")
    elif cmd == "same-records":
        a, b = records(args[0]), records(args[1])
        if a != b:
            diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            fail(f"{args[0]} ({len(a)} records) and {args[1]} ({len(b)}) differ from record {diff}")
        print(f"{len(a)} records identical")
    elif cmd == "check-remote":
        check_remote(args[0], int(args[1]), int(args[2]), args[3:])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
