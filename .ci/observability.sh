#!/usr/bin/env bash
# Observability checks (issue 22): the alert rules' unit tests, the chart's copies of the rules
# and the dashboard, then the dashboard's queries and the alert rules against a real Prometheus
# (Debian's `prometheus`, on loopback, 1 s scrapes) scraping a real three-node repliqd cluster
# with failover on a real etcd, under a bounded load (.ci/observability_check.py says what it
# checks). About a minute once the binaries are built.
#
#   bash .ci/observability.sh
#
# Needs: python3, cargo, etcd (.ci/install-etcd.sh); installs prometheus (promtool) if missing.
set -euo pipefail
GRAFANA_SDK='grafana-foundation-sdk==1769699998!10.1.0'
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus || {
        apt-get update
        apt-get install -y --no-install-recommends prometheus
    }
fi
command -v etcd >/dev/null 2>&1 || bash .ci/install-etcd.sh

echo "== promtool check rules / test rules"
promtool check rules deploy/prometheus/repliq-rules.yaml
(cd deploy/prometheus && promtool test rules repliq-rules.test.yaml)

echo "== the chart carries the same rules and dashboard"
cmp deploy/prometheus/repliq-rules.yaml deploy/helm/repliq/files/repliq-rules.yaml
cmp deploy/grafana/repliq.json deploy/helm/repliq/files/repliq.json
python3 - <<'PY'
import json
d = json.load(open("deploy/grafana/repliq.json"))
assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
names = [v["name"] for v in d["templating"]["list"]]
assert names == ["datasource", "namespace", "node", "queue"], names
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "panel ids are unique"
for p in d["panels"]:
    assert p["type"] in ("timeseries", "stat"), p["type"]
    assert p["datasource"]["uid"] == "${datasource}", p["title"]
    assert set(p["gridPos"]) == {"x", "y", "w", "h"}, p["title"]
    assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
print(f"dashboard: {len(ids)} panels, {sum(len(p['targets']) for p in d['panels'])} queries")
PY

echo "== the dashboard against Grafana's dashboard model (grafana-foundation-sdk, pinned, in a venv)"
venv=${REPLIQ_OBS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/repliq-obs-venv}
if ! "$venv/bin/python" -c 'import grafana_foundation_sdk' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$GRAFANA_SDK"
fi
"$venv/bin/python" .ci/dashboard_schema.py deploy/grafana/repliq.json

target=${CARGO_TARGET_DIR:-target}
# .ci/run sets REPLIQ_OBS_PREBUILT=1: `cargo test --workspace` has just built both binaries, and
# building them with `-p` would compile much again under other feature unification.
if [ "${REPLIQ_OBS_PREBUILT:-0}" = 1 ] && [ -x "$target/debug/repliqd" ] && [ -x "$target/debug/queue_worker" ]; then
    echo "== using the binaries cargo test built"
else
    echo "== build repliqd and the load generator"
    cargo build -p repliqd --bin repliqd -p repliq-tests --bin queue_worker
fi

echo "== a real Prometheus scraping a three-node cluster"
python3 .ci/observability_check.py --repo "$repo" \
    --repliqd "$target/debug/repliqd" --worker "$target/debug/queue_worker" \
    --etcd "$(command -v etcd)" --prometheus "$(command -v prometheus)" \
    --promtool "$(command -v promtool)"
