#!/usr/bin/env bash
# Smoke run of the benchmark harness: tiny counts, every workload, no timing thresholds.
# Installs the peer servers it can (Debian packages, as root) and tolerates a missing one: the
# harness then reports that peer as skipped instead of failing. Called from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
# Plots need one TTF font (read by plotters' pure-Rust ab_glyph backend; no fontconfig).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)

if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        # Update the package lists only if installing from the current ones fails.
        apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } \
            || echo "bench-smoke: could not install ${need[*]}; the harness will skip what is missing"
    else
        echo "bench-smoke: not root or no apt-get; missing: ${need[*]} (the harness will skip them)"
    fi
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# A debug build: it reuses what `cargo test --workspace` already compiled, and smoke mode
# asserts no timings. (Published numbers come from `--release` runs; see the README.)
cargo run -p repliq-bench -- run --smoke --out "$out"
echo "bench-smoke: harness ran; report follows"
sed -n '/^## Systems/,/^## Ping-pong/p' "$out/results.md" | head -n -1
grep -c '' "$out/results.json" >/dev/null
test -s "$out/results.md"
