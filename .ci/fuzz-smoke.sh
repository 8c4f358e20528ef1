#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets in fuzz/ (issue 20): builds them once with nightly
# (address sanitizer, debug assertions), then runs each for FUZZ_SECONDS (default 15) from its
# committed seeds, in a temporary corpus (the checkout is not written). Fails if any target
# crashes, panics, leaks where leaks are checked, or spends more than 10 s on one input, and
# prints the input that did it (to reproduce: cargo +nightly fuzz run TARGET PATH). Prints the
# build time and, per target, executions, executions per second and coverage.
#
# cargo-fuzz is installed if missing (`cargo install cargo-fuzz --locked`: about 3 minutes on
# 2 cores; cache ~/.cargo/bin to skip it). Needs a nightly toolchain (`rustup toolchain install
# nightly`). FUZZ_TARGETS="a b" runs only those.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
seconds=${FUZZ_SECONDS:-15}
now() { date +%s; }
start=$(now)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    t=$(now)
    cargo install cargo-fuzz --locked
    echo "fuzz-smoke: cargo-fuzz installed in $(( $(now) - t )) s"
fi
cargo fuzz --version

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

t=$(now)
# One build for every target (they share the library's build).
cargo +nightly fuzz build
echo "fuzz-smoke: build $(( $(now) - t )) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
summary=()
for target in $targets; do
    # The queue's background thread (spare segment files) exits on its own after an input; its
    # thread-exit allocations look like leaks (fuzz/README.md). Address errors are still caught.
    case "$target" in
        queue_model | meta_file | segment_recovery | replication_state | replica_frames) leaks=0 ;;
        *) leaks=1 ;;
    esac
    mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
    log="$work/$target.log"
    t=$(now)
    status=0
    cargo +nightly fuzz run "$target" "$work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -detect_leaks="$leaks" -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$target/" >"$log" 2>&1 || status=$?
    elapsed=$(( $(now) - t ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    # (No match after an early crash: empty, not a failed pipeline.)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2 || true)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2 || true)
    line=$(printf '%-18s %10s execs %8s/s  cov %6s  ft %6s  %4s s' \
        "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$elapsed")
    summary+=("$line")
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "fuzz-smoke: $target FAILED (exit $status); the end of its log:"
        tail -n 60 "$log"
        for input in "$work/artifacts/$target"/*; do
            [ -e "$input" ] || continue
            kept="${TMPDIR:-/tmp}/fuzz-smoke-$target-$(basename "$input")"
            cp "$input" "$kept"
            echo "fuzz-smoke: crash input of $target: $kept"
            echo "fuzz-smoke: reproduce with: cd fuzz && cargo +nightly fuzz run $target $kept"
        done
    fi
    echo "$line"
done

echo
echo "fuzz-smoke: $seconds s per target, total $(( $(now) - start )) s"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
