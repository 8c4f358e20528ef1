#!/usr/bin/env python3
"""Data checks of .ci/container-cluster.sh, reading what the containers left on the host.

  role DIR                          print `ROLE EPOCH` of the queue at DIR (replication.json)
  wait-primary SECS DIR...          wait (bounded) until exactly one DIR is primary of an epoch
                                    >= 2; print `INDEX MILLISECONDS`
  acked LOG...                      print the (seq, id) pairs of the ACK lines of producer logs
  check-acked CAT ACKS              every acknowledged (seq, id) is in CAT (a `repliq cat`
                                    output) at the same seq; no id twice; seqs contiguous;
                                    bodies intact. Print the counts
  check-absent CAT MIN_ID           no message with id >= MIN_ID in CAT
  same-records CAT CAT              the two outputs hold the same records (seq, time, message)

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
    # Must match tests/src/bin/acked_producer.rs `order`.
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


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "role":
        r, e = role(args[0])
        print(f"{r} {e}")
    elif cmd == "wait-primary":
        bound, dirs = float(args[0]), args[1:]
        t0 = time.monotonic()
        while time.monotonic() - t0 < bound:
            primaries = [i for i, d in enumerate(dirs) if role(d)[0] == "primary" and role(d)[1] >= 2]
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
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
