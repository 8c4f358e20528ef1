#!/usr/bin/env bash
# The Python reader (clients/python) against `repliq cat`: a queue of every supported field type,
# written by a Rust program the CLI was not built with, printed by both; the JSON lines must be
# equal value for value. Checked twice: from the source tree with the pure-Python crc32c, and as
# installed by `pip install 'clients/python[fast]'` (pyproject.toml, the `repliq-reader` command,
# the C crc32c from PyPI) in a throwaway virtual environment. Ends with a throughput figure
# (clients/python/bench.py; printed, not judged). clients/python/check_decoder.py holds the
# compiled decoder to the reference one, on damaged payloads too.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p repliq-tests --bin write_every_type -p repliqd --bin repliq
target="${CARGO_TARGET_DIR:-target}/debug"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$target/write_every_type" "$tmp/queue" 300
"$target/repliq" cat "$tmp/queue" > "$tmp/cat.jsonl"
"$target/repliq" cat "$tmp/queue" --rfc3339 > "$tmp/cat-rfc.jsonl"

compare() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
b = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert len(a) == len(b) == 300, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, "record %d differs:\n%s\n%s" % (x["seq"], x, y)
print("python reader (%s): %d records equal to `repliq cat`" % (sys.argv[3], len(a)))
PY
}

# From the source tree, standard library only.
REPLIQ_READER_PURE_CRC=1 PYTHONPATH=clients/python PYTHONIOENCODING=utf-8 \
    python3 -m repliq_reader cat "$tmp/queue" > "$tmp/py.jsonl"
compare "$tmp/cat.jsonl" "$tmp/py.jsonl" "source tree, pure-python crc32c"
# The compiled decoder against the reference one, on the records and on damaged copies of them.
python3 clients/python/check_decoder.py "$tmp/queue"

# Installed with pip, with the C crc32c.
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check 'clients/python[fast]'
backend=$(cd "$tmp" && "$tmp/venv/bin/python" -c 'import repliq_reader; print(repliq_reader.CRC32C_BACKEND)')
[ "$backend" = crc32c ] || { echo "python reader: expected the C crc32c, got $backend"; exit 1; }
PYTHONIOENCODING=utf-8 "$tmp/venv/bin/repliq-reader" cat "$tmp/queue" > "$tmp/pip.jsonl"
compare "$tmp/cat.jsonl" "$tmp/pip.jsonl" "pip install, $backend"
PYTHONIOENCODING=utf-8 "$tmp/venv/bin/repliq-reader" cat "$tmp/queue" --rfc3339 > "$tmp/pip-rfc.jsonl"
compare "$tmp/cat-rfc.jsonl" "$tmp/pip-rfc.jsonl" "pip install, --rfc3339"

"$target/write_every_type" --orders "$tmp/orders" 50000
python3 clients/python/check_decoder.py "$tmp/orders"
"$tmp/venv/bin/python" clients/python/bench.py "$tmp/orders" 1
