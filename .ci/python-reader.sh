#!/usr/bin/env bash
# The Python reader (clients/python, standard library only) against `repliq cat`: a queue of
# every supported field type, written by a Rust program the CLI was not built with, printed by
# both; the JSON lines must be equal value for value.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p repliq-tests --bin write_every_type
cargo build -q -p repliqd --bin repliq
target="${CARGO_TARGET_DIR:-target}/debug"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$target/write_every_type" "$tmp/queue" 300
"$target/repliq" cat "$tmp/queue" > "$tmp/cat.jsonl"
PYTHONPATH=clients/python PYTHONIOENCODING=utf-8 python3 -m repliq_reader cat "$tmp/queue" > "$tmp/py.jsonl"
python3 - "$tmp/cat.jsonl" "$tmp/py.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
b = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert len(a) == len(b) == 300, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, "record %d differs:\n%s\n%s" % (x["seq"], x, y)
print("python reader: %d records equal to `repliq cat`" % len(a))
PY
