#!/usr/bin/env bash
# Seeded random fault schedules on the three-node container cluster, each checked by repliq-check
# (issue 24; docs/CHECKER.md). Every seed prints its schedule, history size and verdict; a seed
# that fails replays the same schedule with `bash .ci/fault-schedules.sh SEED`.
#
#   bash .ci/fault-schedules.sh                   the CI seeds (bounded: about 3 min with images built)
#   bash .ci/fault-schedules.sh SEED...           these seeds
#   REPLIQ_FAULT_DURATION=20 REPLIQ_FAULT_KEEP=DIR REPLIQ_FAULT_SUMMARY=FILE bash .ci/fault-schedules.sh ...
#       schedule length in seconds (default 15); where histories and journals of failed seeds are
#       kept; a JSON line per seed appended to FILE. REPLIQ_FAULT_BUDGET=SECS: start no seed after
#       SECS seconds (for long runs over many seeds). REPLIQ_FAULT_SCHEDULES=1: the first five fault
#       kinds only (the seeds found before the one-way faults replay with it; default 2); 3 adds
#       disk-full (each node's directory a tmpfs the script mounts, filled for a while).
#       REPLIQ_FAULT_MODE=synchronous|asynchronous|alternate: the queues' replication (default
#       alternate: odd seeds synchronous with required_acks 1, even seeds asynchronous, where a
#       failover may set aside acknowledged records and the checker counts them instead)
#
# Builds the FROM scratch images as .ci/container-cluster.sh does (the repliq image with the static
# history_producer, history_consumer and repliq-check beside it, and Debian's etcd), then runs
# .ci/fault_schedules.py. Needs: bash, docker (engine running), python3, cargo, readelf,
# /usr/bin/etcd (.ci/install-etcd.sh); for schedules 2 (the one-way faults) root, nsenter and
# iptables on the host (apt-get install iptables util-linux).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Five short schedules: with the cluster set up and torn down each time, ~35 s a seed.
CI_SEEDS="1 2 3 4 5"
duration=${REPLIQ_FAULT_DURATION:-15}
schedules=${REPLIQ_FAULT_SCHEDULES:-2}
mode=${REPLIQ_FAULT_MODE:-alternate}
seeds=${*:-$CI_SEEDS}

started=$SECONDS
die() { printf 'fault-schedules: FAIL: %s\n' "$*" >&2; exit 1; }
[ -x /usr/bin/etcd ] || die "/usr/bin/etcd is missing (bash .ci/install-etcd.sh)"
command -v docker >/dev/null || die "docker is missing"
if [ "$schedules" != 1 ]; then
    # The one-way faults put iptables rules into a container's network namespace from the host.
    [ "$(id -u)" = 0 ] || die "schedules 2 need root (nsenter into containers); REPLIQ_FAULT_SCHEDULES=1 runs without"
    if ! { command -v nsenter >/dev/null && command -v iptables >/dev/null; }; then
        echo "fault-schedules: installing nsenter and iptables (apt-get install util-linux iptables)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux iptables >/dev/null ||
            { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux iptables >/dev/null; } || true
    fi
    command -v nsenter >/dev/null && command -v iptables >/dev/null ||
        die "schedules 2 need nsenter and iptables (apt-get install util-linux iptables); REPLIQ_FAULT_SCHEDULES=1 runs without"
fi

run_id="rqfs-$$-$RANDOM"
image="repliq:$run_id"
etcd_image="repliq-test-etcd:$run_id"
work=$(mktemp -d "${TMPDIR:-/tmp}/repliq-fault-images.XXXXXX")
cleanup() {
    local rc=$?
    set +e
    docker image rm -f "$image" "$etcd_image" >/dev/null 2>&1
    rm -rf "$work"
    printf '\nfault-schedules: %s after %ds\n' "$([ "$rc" = 0 ] && echo passed || echo "failed (exit $rc)")" $((SECONDS - started))
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The same package selection as .ci/container-cluster.sh plus repliq-check: one feature resolution,
# so the two share every compiled dependency (a different selection rebuilds the whole stack).
bin_dir=$(REPLIQ_EXTRA_CARGO_ARGS="-p repliq-tests --bin acked_producer -p repliq-check --bin history_producer --bin history_consumer --bin repliq-check" \
    deploy/docker/build-image.sh --tag "$image" --print-bin-dir)
for b in history_producer history_consumer repliq-check repliq; do
    LC_ALL=C readelf -lW "$bin_dir/$b" | grep -q 'program interpreter' && die "$bin_dir/$b is dynamically linked"
done

ctx=$work/etcd-context
mkdir -p "$ctx/rootfs/usr/bin"
cp /usr/bin/etcd "$ctx/rootfs/usr/bin/etcd"
for lib in $(ldd /usr/bin/etcd | grep -oE '/[^ ]+'); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp .ci/etcd-image/Dockerfile "$ctx/Dockerfile"
docker build -q -t "$etcd_image" "$ctx" >/dev/null
printf 'fault-schedules: images built in %ds; seeds %s, %s s each, schedules %s, mode %s\n' $((SECONDS - started)) "$seeds" "$duration" "$schedules" "$mode"

extra=()
[ -n "${REPLIQ_FAULT_KEEP:-}" ] && extra+=(--keep "$REPLIQ_FAULT_KEEP")
[ -n "${REPLIQ_FAULT_SUMMARY:-}" ] && extra+=(--summary "$REPLIQ_FAULT_SUMMARY")
[ -n "${REPLIQ_FAULT_BUDGET:-}" ] && extra+=(--budget-secs "$REPLIQ_FAULT_BUDGET")
# shellcheck disable=SC2086 # seeds is a list of words
python3 .ci/fault_schedules.py run $seeds --image "$image" --etcd-image "$etcd_image" \
    --bin-dir "$bin_dir" --duration "$duration" --schedules "$schedules" --mode "$mode" "${extra[@]}"
