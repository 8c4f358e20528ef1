#!/usr/bin/env bash
# Three repliqd containers on a private Docker network, failing over by a lease on etcd (issue 11,
# item 6(b)). Images are FROM scratch only: the repliq image (deploy/docker/build-image.sh) and a
# test image of Debian's etcd binary (.ci/etcd-image/). Nothing is pulled.
#
#   bash .ci/container-cluster.sh
#
# 1. etcd and nodes a, b, c: synchronous, required_acks 1, static discovery with one shared
#    `members` list, election backend etcd, mutual TLS on the gRPC port (`server.tls`, issue 20):
#    a CA and one certificate per node made at test time, the node name as DNS SAN
#    (docs/SECURITY.md). A producer container shares a's volume (the library needs the daemon's
#    file system) and prints `ACK seq id` for every enqueue that returned Ok.
# 1b. The streams are TLS: two impostors claiming to be node a stream a queue to b, one in plain
#    text (a repliqd without `server.tls`), one with a certificate for `a` from another CA. b
#    refuses both handshakes (its log names their addresses) and never holds their messages.
# 2. `docker kill` of a and its producer mid-stream: b or c becomes primary (time measured);
#    every acknowledged message is on it at the same sequence, none twice (`repliq cat`).
# 3. An old-epoch producer starts on a's volume before a's daemon restarts: none of its writes is
#    acknowledged, and none is ever visible on b or c; a rejoins as a replica.
# 4. `docker network disconnect` of the other replica while a producer writes on the new primary:
#    every write is acknowledged (a is enough); after `docker network connect` the partitioned
#    node catches up: byte-identical segment files, identical records on all three nodes. The
#    time from the connect to streaming again (caught up) is printed; goal 5 s (issue 24).
# 5. That replica, cut off again, misses writes, is killed and removed with no FIN reaching the
#    primary and comes back (same name and volume) at a new address: the time from its start
#    to caught up is printed; goal 5 s.
# 6. Four remote producers in containers of their own (no node's files; the client port over
#    mutual TLS, each seeded with its own node first) write 600 messages each in batches of 5;
#    the primary is killed under them and the election moves the lease. Every acknowledged
#    message is on the last primary exactly once, each producer's in its own order, all of them
#    acknowledged in the end (`remote_producer` retries with the same producer sequences).
# Prints its figures; a trap removes every container, volume directory, network and image it made.
#
# Needs: bash, docker (engine running), python3, cargo, readelf, openssl, /usr/bin/etcd
# (.ci/install-etcd.sh).
#
# The certificates come from the `openssl` command rather than a small rcgen bin in the repo:
# .ci/deploy-check.sh, earlier in the same gate, already makes its TLS test certificates with it,
# and it is on every Debian/Ubuntu machine (ca-certificates depends on it), so nothing more is
# installed; a Rust bin would be one more crate graph (rcgen, ring) compiled into the static
# build on every cold CI run, for five files. Test keys only: 0644, for the containers' user.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

LEASE_MS=3000
ACK_TIMEOUT_MS=2000
ACKS_BEFORE_KILL=2000
PARTITION_MESSAGES=400
OLD_EPOCH_ID=500000
# The impostors' messages (never acknowledged by the cluster, never on any node).
ROGUE_ID=900000
PARTITION_ID=100000
MOVED_ID=200000
MOVED_MESSAGES=200
# Issue 21: four remote producers (client port, mutual TLS) through a failover.
REMOTE_ID=300000
REMOTE_MESSAGES=600
REMOTE_BEFORE_KILL=800
# Issue 24: a healed partition, or a replica back at a new address with no FIN, streams again
# within HEAL_GOAL_MS with the default keep-alive settings; the test fails above HEAL_MAX_MS (the
# goal plus slack for a loaded CI machine).
HEAL_GOAL_MS=5000
HEAL_MAX_MS=${REPLIQ_HEAL_MAX_MS:-8000}

started=$SECONDS
step() { printf '\n== %s  [%ds]\n' "$*" $((SECONDS - started)); }
die() { printf 'container-cluster: FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf 'container-cluster: %s\n' "$*"; }
check() { python3 "$repo/.ci/container_cluster_check.py" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/repliq-cluster.XXXXXX")
run_id="rqcc-$$-$RANDOM"
containers=()
network=""
images=()
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ]; then
        for c in "${containers[@]}"; do
            docker inspect "$c" >/dev/null 2>&1 || continue
            printf -- '---- last log lines of %s ----\n' "$c" >&2
            docker logs --tail 25 "$c" 2>&1 | cut -c1-300 >&2
        done
    fi
    for c in "${containers[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1; done
    [ -n "$network" ] && docker network rm "$network" >/dev/null 2>&1
    for i in "${images[@]}"; do docker image rm -f "$i" >/dev/null 2>&1; done
    rm -rf "$work"
    if [ "$rc" = 0 ]; then
        printf '\ncontainer-cluster: passed in %ds\n' $((SECONDS - started))
    else
        printf '\ncontainer-cluster: failed (exit %d) after %ds\n' "$rc" $((SECONDS - started)) >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_for WHAT TENTHS COMMAND...: runs COMMAND every 0.1 s, at most TENTHS times.
wait_for() {
    local what=$1 tenths=$2; shift 2
    for _ in $(seq 1 "$tenths"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "timed out after $((tenths / 10)) s waiting for $what"
}
logged() { docker logs "$1" 2>&1 | grep -q -- "$2"; }
acks() { docker logs "$1" 2>/dev/null | grep -c '^ACK ' || true; }
exited() { [ "$(docker inspect -f '{{.State.Running}}' "$1")" = false ]; }
acks_at_least() { [ "$(acks "$1")" -ge "$2" ]; }
has_outcome() { docker logs "$1" 2>/dev/null | grep -qE '^(ACK|TIMEOUT|FENCED|READONLY|LEASE|ERR) '; }
# Fenced is `replica 1`; following the new primary is `replica` of its epoch (>= 2).
following() { local r e; read -r r e < <(check role "$1"); [ "$r" = replica ] && [ "$e" -ge 2 ]; }

# --------------------------------------------------------------------------------------------
step "images"
[ -x /usr/bin/etcd ] || die "/usr/bin/etcd is missing (bash .ci/install-etcd.sh)"
image="repliq:$run_id"
images+=("$image")
bin_dir=$(REPLIQ_EXTRA_CARGO_ARGS="-p repliq-tests --bin acked_producer --bin remote_producer" \
    deploy/docker/build-image.sh --tag "$image" --print-bin-dir)
producer_bin=$bin_dir/acked_producer
remote_bin=$bin_dir/remote_producer
for bin in "$producer_bin" "$remote_bin"; do
    if LC_ALL=C readelf -lW "$bin" | grep -q 'program interpreter'; then
        die "$bin is dynamically linked"
    fi
done

etcd_image="repliq-test-etcd:$run_id"
images+=("$etcd_image")
ctx=$work/etcd-context
mkdir -p "$ctx/rootfs/usr/bin"
cp /usr/bin/etcd "$ctx/rootfs/usr/bin/etcd"
# Exactly the libraries the dynamic linker resolves for it (glibc and the loader, for 3.4).
for lib in $(ldd /usr/bin/etcd | grep -oE '/[^ ]+'); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp .ci/etcd-image/Dockerfile "$ctx/Dockerfile"
docker build -q -t "$etcd_image" "$ctx" >/dev/null
note "images $image ($(docker image inspect -f '{{.Size}}' "$image") bytes) and $etcd_image ($(docker image inspect -f '{{.Size}}' "$etcd_image") bytes)"

# --------------------------------------------------------------------------------------------
step "test certificates (openssl): a CA, one certificate per node, an impostor's CA"
command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
# new_ca DIR SUBJECT: a self-signed CA (ECDSA P-256) in DIR/ca.{crt,key}.
new_ca() {
    mkdir -p "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null || die "openssl: CA $2"
}
# node_cert CA_DIR DIR NAME: DIR/{ca.crt,tls.crt,tls.key}, NAME the certificate's DNS SAN (the
# node's identity; both server and client auth: a node is the one and the other), as a Secret
# mounts them.
node_cert() {
    local ca=$1 dir=$2 name=$3
    mkdir -p "$dir"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null || die "openssl: key for $name"
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n' \
        "$name" > "$dir/ext"
    openssl x509 -req -in "$dir/tls.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null || die "openssl: certificate for $name"
    cp "$ca/ca.crt" "$dir/ca.crt"
    rm -f "$dir/tls.csr" "$dir/ext"
    chmod 0755 "$dir" && chmod 0644 "$dir"/*
}
new_ca "$work/pki/ca" "container-cluster CA"
for n in a b c; do node_cert "$work/pki/ca" "$work/tls/$n" "$n"; done
# The remote producers' identity (not a node name: it cannot replicate, only use the client port).
node_cert "$work/pki/ca" "$work/tls/producer" producer
new_ca "$work/pki/rogue-ca" "impostor CA"
node_cert "$work/pki/rogue-ca" "$work/tls/rogue" a
chmod 0755 "$work" "$work/tls"
note "CA and certificates for a, b, c (DNS SAN = node name); a certificate for 'a' from another CA"

# --------------------------------------------------------------------------------------------
step "etcd and three repliqd nodes on a private network, mutual TLS between them"
network="$run_id-net"
docker network create --internal "$network" >/dev/null
hardened=(--read-only --cap-drop ALL --security-opt no-new-privileges --user 65532:65532)

containers+=("$run_id-etcd")
docker run -d --name "$run_id-etcd" --network "$network" "${hardened[@]}" \
    --tmpfs /data:uid=65532,gid=65532 "$etcd_image" \
    --name etcd --data-dir /data/etcd \
    --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://$run_id-etcd:2379" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster etcd=http://127.0.0.1:2380 >/dev/null
wait_for "etcd to serve clients" 150 logged "$run_id-etcd" 'ready to serve client requests'

nodes=(a b c)
members=""
for n in "${nodes[@]}"; do
    members="$members      - name: $n
        address: $run_id-$n:31337
"
done
mkdir -p "$work/cfg"
for n in "${nodes[@]}"; do
    mkdir -p "$work/$n"
    chown 65532:65532 "$work/$n" 2>/dev/null || chmod 0777 "$work/$n"
done
# One config for all three nodes, as a StatefulSet's ConfigMap: each drops its own member entry.
cat > "$work/cfg/config.yaml" <<EOF
replication:
  mode: synchronous
  required_acks: 1
  ack_timeout_ms: $ACK_TIMEOUT_MS
  discovery:
    method: static
    members:
$members
queue:
  capacity: 10000000
  persistence:
    path: /var/lib/repliq
server:
  grpc_listen: 0.0.0.0:31337
  http_listen: 0.0.0.0:9100
  shutdown_grace_ms: 2000
  clients: true
  tls:
    ca: /etc/repliq-tls/ca.crt
    cert: /etc/repliq-tls/tls.crt
    key: /etc/repliq-tls/tls.key
election:
  backend: etcd
  endpoints: ["http://$run_id-etcd:2379"]
  prefix: $run_id
  lease_duration_ms: $LEASE_MS
  renew_deadline_ms: 1800
  retry_period_ms: 500
EOF
chmod 0755 "$work" "$work/cfg" && chmod 0644 "$work/cfg/config.yaml"

start_node() { # NAME
    local n=$1
    containers+=("$run_id-$n")
    docker rm -f "$run_id-$n" >/dev/null 2>&1 || true
    # The alias: clients reach the node by its name, the name its certificate carries.
    docker run -d --name "$run_id-$n" --network "$network" --network-alias "$n" "${hardened[@]}" \
        -e NODE_NAME="$n" -v "$work/$n:/var/lib/repliq" -v "$work/tls/$n:/etc/repliq-tls:ro" \
        -v "$work/cfg/config.yaml:/etc/repliq/config.yaml:ro" "$image" >/dev/null
    wait_for "repliqd $n to listen" 150 logged "$run_id-$n" 'repliqd listening'
    # Without server.tls the daemon warns that it streams in plain text.
    if logged "$run_id-$n" 'server.tls is not set'; then die "repliqd $n runs without mutual TLS"; fi
}
for n in "${nodes[@]}"; do start_node "$n"; done

# A container on node n's file system: no network, the node's volume, the hardened settings.
on_node() { # NODE NAME ARGS...: detached producer container NAME running acked_producer ARGS
    local n=$1 name=$2; shift 2
    containers+=("$name")
    docker run -d --name "$name" --network none "${hardened[@]}" -v "$work/$n:/var/lib/repliq" \
        -v "$producer_bin:/usr/local/bin/acked_producer:ro" \
        --entrypoint /usr/local/bin/acked_producer "$image" /var/lib/repliq/orders "$@" >/dev/null
}
repliq_on() { # NODE ARGS...: the repliq CLI on node n's volume
    local n=$1; shift
    docker run --rm --network none "${hardened[@]}" -v "$work/$n:/var/lib/repliq" \
        --entrypoint repliq "$image" "$@"
}
q() { echo "$work/$1/orders"; }

# --------------------------------------------------------------------------------------------
step "impostors claiming to be a: plain text, and a certificate of another CA"
# Each has a queue of its own (written before its daemon starts, as a's old-epoch producer
# does) and streams it to b, its only peer, under a's name.
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"; }
refused_from() { # CONTAINER: b logged a refused TLS handshake from CONTAINER's address
    docker logs "$run_id-b" 2>&1 | grep -F 'TLS handshake refused' | grep -qF "$(ip_of "$1"):"
}
for kind in plain rogue; do
    mkdir -p "$work/impostor-$kind"
    chown 65532:65532 "$work/impostor-$kind" 2>/dev/null || chmod 0777 "$work/impostor-$kind"
    docker run --rm --network none "${hardened[@]}" -v "$work/impostor-$kind:/var/lib/repliq" \
        -v "$producer_bin:/usr/local/bin/acked_producer:ro" --entrypoint /usr/local/bin/acked_producer \
        "$image" /var/lib/repliq/orders "$ROGUE_ID" 20 30 > "$work/impostor-$kind.log" \
        || die "the $kind impostor's queue: $(head -c 300 "$work/impostor-$kind.log")"
    tls_lines="" tls_mount=()
    if [ "$kind" = rogue ]; then
        tls_lines="  tls:
    ca: /etc/repliq-tls/ca.crt
    cert: /etc/repliq-tls/tls.crt
    key: /etc/repliq-tls/tls.key"
        tls_mount=(-v "$work/tls/rogue:/etc/repliq-tls:ro")
    fi
    cat > "$work/cfg/impostor-$kind.yaml" <<EOF
replication:
  mode: asynchronous
  discovery:
    method: static
    peers: [{name: b, address: "$run_id-b:31337"}]
queue:
  capacity: 10000000
  persistence:
    path: /var/lib/repliq
server:
  grpc_listen: 0.0.0.0:31337
  http_listen: 0.0.0.0:9100
$tls_lines
EOF
    chmod 0644 "$work/cfg/impostor-$kind.yaml"
    containers+=("$run_id-impostor-$kind")
    docker run -d --name "$run_id-impostor-$kind" --network "$network" "${hardened[@]}" \
        -e NODE_NAME=a -v "$work/impostor-$kind:/var/lib/repliq" "${tls_mount[@]}" \
        -v "$work/cfg/impostor-$kind.yaml:/etc/repliq/config.yaml:ro" "$image" >/dev/null
done
for kind in plain rogue; do
    wait_for "b to refuse the $kind impostor's handshake" 300 refused_from "$run_id-impostor-$kind"
done
for kind in plain rogue; do
    ip=$(ip_of "$run_id-impostor-$kind")
    why=$(docker logs "$run_id-b" 2>&1 | grep -F 'TLS handshake refused' | grep -F "$ip:" | head -n1 \
        | sed 's/\x1b\[[0-9;]*m//g' | grep -oE 'error=.*' | cut -c1-160 || true)
    note "b refused the $kind impostor ($ip): $why"
    docker rm -f -v "$run_id-impostor-$kind" >/dev/null
done
if [ -d "$work/b/orders" ]; then
    repliq_on b cat /var/lib/repliq/orders > "$work/b-after-impostors.jsonl"
    check check-absent "$work/b-after-impostors.jsonl" "$ROGUE_ID"
fi
note "b holds none of the impostors' messages"

# --------------------------------------------------------------------------------------------
step "kill the primary and its producer mid-stream"
on_node a "$run_id-p1" 0 100000000 300
wait_for "$ACKS_BEFORE_KILL acknowledged messages" 1200 acks_at_least "$run_id-p1" "$ACKS_BEFORE_KILL"
[ "$(check role "$(q a)")" = "primary 1" ] || die "a is not the primary of epoch 1: $(check role "$(q a)")"
docker kill "$run_id-a" "$run_id-p1" >/dev/null
read -r new_index failover_ms < <(check wait-primary 60 "$(q b)" "$(q c)")
new=${nodes[$((new_index + 1))]}
other=$([ "$new" = b ] && echo c || echo b)
docker logs "$run_id-p1" > "$work/p1.log" 2>/dev/null
check acked "$work/p1.log" > "$work/p1.acks"
acked_before_kill=$(wc -l < "$work/p1.acks")
note "$new is primary (epoch $(check role "$(q "$new")" | cut -d' ' -f2)) ${failover_ms} ms after docker kill (lease $LEASE_MS ms); $acked_before_kill messages acknowledged before the kill"
repliq_on "$new" cat /var/lib/repliq/orders > "$work/new-after-kill.jsonl"
lost_line=$(check check-acked "$work/new-after-kill.jsonl" "$work/p1.acks")
note "on $new: $lost_line"

# --------------------------------------------------------------------------------------------
step "the old primary restarts with a producer of the old epoch on its volume"
on_node a "$run_id-p3" "$OLD_EPOCH_ID" 100000000 30
# Before a's daemon runs, the producer is refused by a's lease word (its last deadline has passed:
# LEASE) or, on a queue without one, writes locally in epoch 1 and waits for acknowledgements.
wait_for "the old-epoch producer's first outcome" 300 has_outcome "$run_id-p3"
start_node a
wait_for "the old-epoch producer to stop" 600 exited "$run_id-p3"
docker logs "$run_id-p3" > "$work/p3.log" 2>/dev/null
old_acks=$(grep -c '^ACK ' "$work/p3.log" || true)
old_timeouts=$(grep -c '^TIMEOUT ' "$work/p3.log" || true)
old_refused=$(grep -c '^LEASE ' "$work/p3.log" || true)
old_end=$(grep -E '^(FENCED|READONLY|ERR|DONE)' "$work/p3.log" | head -n1 | cut -c1-200)
[ "$old_acks" = 0 ] || die "the old epoch's producer got $old_acks acknowledgements"
grep -qE '^(FENCED|READONLY) ' "$work/p3.log" || die "the old-epoch producer was not fenced: $old_end"
note "old-epoch producer: $old_refused writes refused by the lease, $old_timeouts timed out unacknowledged, then '$old_end'"
wait_for "a to rejoin as a replica of the new epoch" 600 following "$(q a)"
note "a: $(check role "$(q a)") after restart"

# --------------------------------------------------------------------------------------------
step "partition replica $other while a producer writes on $new"
# a must hold what the new primary holds before it is the only replica left.
same_cat() { [ "$(repliq_on "$1" cat /var/lib/repliq/orders | sha256sum)" = "$(repliq_on "$2" cat /var/lib/repliq/orders | sha256sum)" ]; }
wait_for "a to catch up with $new" 600 same_cat a "$new"
docker network disconnect "$network" "$run_id-$other"
before_other=$(repliq_on "$other" cat /var/lib/repliq/orders | wc -l)
on_node "$new" "$run_id-p2" "$PARTITION_ID" "$PARTITION_MESSAGES" 60
wait_for "the producer on $new" 900 exited "$run_id-p2"
docker logs "$run_id-p2" > "$work/p2.log" 2>/dev/null
check acked "$work/p2.log" > "$work/p2.acks"
partition_acks=$(wc -l < "$work/p2.acks")
grep -q '^DONE' "$work/p2.log" || die "producer on $new: $(grep -vE '^ACK ' "$work/p2.log" | head -n3)"
[ "$partition_acks" = "$PARTITION_MESSAGES" ] \
    || die "only $partition_acks of $PARTITION_MESSAGES writes acknowledged with replica a up: $(grep -v '^ACK ' "$work/p2.log" | head -n3)"
during_other=$(repliq_on "$other" cat /var/lib/repliq/orders | wc -l)
[ "$during_other" = "$before_other" ] || die "$other received records while disconnected ($before_other -> $during_other)"
note "$partition_acks of $PARTITION_MESSAGES writes acknowledged during the partition; $other stayed at $during_other records"

t0=$(now_ms)
docker network connect "$network" "$run_id-$other"
segments_equal() {
    local f
    for f in "$(q "$new")"/*.seg; do cmp -s "$f" "$(q "$other")/$(basename "$f")" || return 1; done
}
wait_for "$other to catch up after the partition" 900 segments_equal
catch_up_ms=$(( $(now_ms) - t0 ))
note "$other caught up ${catch_up_ms} ms after docker network connect: segment files byte-identical to $new's (goal: streaming again within ${HEAL_GOAL_MS} ms)"
[ "$catch_up_ms" -le "$HEAL_MAX_MS" ] || die "the healed partition took ${catch_up_ms} ms to stream again (limit $HEAL_MAX_MS ms)"

# --------------------------------------------------------------------------------------------
step "replica $other back at a new address, with no FIN reaching $new"
# Cut off first, so the kill's FIN/RST never reaches the primary: its stream to the old address
# stays open until the HTTP/2 keep-alive gives up. The new container (same name and volume) gets
# another address from Docker's IPAM; the primary must resolve the name again.
old_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$run_id-$other")
# The replica misses writes while it is cut off (a acknowledges them), then its container is
# killed and removed, still cut off, and started again at once: the primary's stream to the
# old address may still look open when the new one listens.
docker network disconnect "$network" "$run_id-$other"
on_node "$new" "$run_id-p4" "$MOVED_ID" "$MOVED_MESSAGES" 60
wait_for "the producer on $new" 900 exited "$run_id-p4"
docker logs "$run_id-p4" > "$work/p4.log" 2>/dev/null
grep -q '^DONE' "$work/p4.log" || die "producer p4 on $new: $(grep -v '^ACK' "$work/p4.log" | head -n3)"
check acked "$work/p4.log" > "$work/p4.acks"
docker kill "$run_id-$other" >/dev/null
docker rm -f -v "$run_id-$other" >/dev/null
# Docker hands out the lowest free address: an idle etcd takes the one just freed (as another pod
# takes a replaced node's IP), so the replica gets a new one.
containers+=("$run_id-holder")
docker run -d --name "$run_id-holder" --network "$network" "${hardened[@]}" \
    --tmpfs /data:uid=65532,gid=65532 "$etcd_image" --data-dir /data/etcd >/dev/null
t_run=$(now_ms)
start_node "$other"
t0=$(now_ms)
new_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$run_id-$other")
[ "$new_ip" != "$old_ip" ] || die "$other came back at the same address $old_ip"
wait_for "$other to catch up at its new address" 900 segments_equal
t1=$(now_ms)
moved_ms=$(( t1 - t0 ))
note "$other back at $new_ip (was $old_ip, no FIN): streaming again and caught up ${moved_ms} ms after it logged 'listening' ($(( t1 - t_run )) ms after docker run; goal ${HEAL_GOAL_MS} ms)"
[ "$moved_ms" -le "$HEAL_MAX_MS" ] || die "the replica at a new address took ${moved_ms} ms to stream again (limit $HEAL_MAX_MS ms)"

# --------------------------------------------------------------------------------------------
step "final state of the three nodes"
for n in "${nodes[@]}"; do
    repliq_on "$n" verify /var/lib/repliq/orders > "$work/verify-$n.txt" 2>&1 \
        || die "repliq verify on $n: $(head -c 300 "$work/verify-$n.txt")"
    repliq_on "$n" cat /var/lib/repliq/orders > "$work/final-$n.jsonl"
done
cat "$work/p1.acks" "$work/p2.acks" "$work/p4.acks" > "$work/all.acks"
final_line=$(check check-acked "$work/final-$new.jsonl" "$work/all.acks")
for n in a "$other"; do
    check same-records "$work/final-$n.jsonl" "$work/final-$new.jsonl" >/dev/null
done
for n in "${nodes[@]}"; do check check-absent "$work/final-$n.jsonl" "$OLD_EPOCH_ID"; done
note "on $new: $final_line; a and $other hold the same records; no old-epoch or impostor write anywhere"

# --------------------------------------------------------------------------------------------
step "four remote producers in containers of their own; the primary $new is killed under them"
# Issue 21: producers that reach the queue only through the client port (mutual TLS, identity
# `producer`), each seeded with its own node first (as a pod behind an `internalTrafficPolicy:
# Local` Service), two of them with the primary's node. Each prints ACK seq id / ACKDUP id.
remote_on() { # NODE INDEX
    local n=$1 i=$2 seeds="$1:31337" m
    for m in "${nodes[@]}"; do [ "$m" = "$n" ] || seeds="$seeds,$m:31337"; done
    containers+=("$run_id-rp$i")
    docker run -d --name "$run_id-rp$i" --network "$network" "${hardened[@]}" \
        -v "$remote_bin:/usr/local/bin/remote_producer:ro" -v "$work/tls/producer:/etc/repliq-tls:ro" \
        -e REPLIQ_CLIENT_CA=/etc/repliq-tls/ca.crt -e REPLIQ_CLIENT_CERT=/etc/repliq-tls/tls.crt \
        -e REPLIQ_CLIENT_KEY=/etc/repliq-tls/tls.key --entrypoint /usr/local/bin/remote_producer \
        "$image" "$seeds" orders "rp$i" $((REMOTE_ID + i * 10000)) "$REMOTE_MESSAGES" 5 300 >/dev/null
}
remote_owners=(a "$other" "$new" "$new")
for i in 0 1 2 3; do remote_on "${remote_owners[$i]}" "$i"; done
remote_acked() { # the remote producers' acknowledged messages so far
    local t=0 i
    for i in 0 1 2 3; do t=$(( t + $(docker logs "$run_id-rp$i" 2>/dev/null | grep -cE '^ACK(DUP)? ' || true) )); done
    echo "$t"
}
remote_acked_at_least() { [ "$(remote_acked)" -ge "$1" ]; }
wait_for "$REMOTE_BEFORE_KILL remote acknowledgements" 900 remote_acked_at_least "$REMOTE_BEFORE_KILL"
old_epoch=$(check role "$(q "$new")" | cut -d' ' -f2)
remote_at_kill=$(remote_acked)
docker kill "$run_id-$new" >/dev/null
survivors=(a "$other")
read -r idx remote_failover_ms < <(check wait-primary 60 "$(q a)" "$(q "$other")" --above "$old_epoch")
last=${survivors[$idx]}
for i in 0 1 2 3; do wait_for "remote producer rp$i to finish" 1500 exited "$run_id-rp$i"; done
for i in 0 1 2 3; do
    docker logs "$run_id-rp$i" > "$work/rp$i.log" 2>/dev/null
    grep -q '^DONE ' "$work/rp$i.log" || die "remote producer rp$i: $(grep -vE '^ACK' "$work/rp$i.log" | tail -n3)"
done
remote_retries=$(cat "$work"/rp?.log | grep -c '^RETRY ' || true)
repliq_on "$last" cat /var/lib/repliq/orders > "$work/final-remote-$last.jsonl"
remote_line=$(check check-remote "$work/final-remote-$last.jsonl" "$REMOTE_ID" "$REMOTE_MESSAGES" "$work"/rp?.log)
note "$last is primary ${remote_failover_ms} ms after docker kill of $new ($remote_at_kill remote acknowledgements before); $remote_retries batches retried after the client's own tries; on $last: $remote_line"

printf '\ncontainer-cluster figures (mutual TLS between the nodes; impostors refused: plain text, another CA): new primary %s after %d ms (lease %d ms); acknowledged before the kill: %d; lost: 0; duplicated: 0; old-epoch writes accepted: 0 (%d timed out); acknowledged during the partition: %d/%d; partitioned replica streaming again and caught up in %d ms after the heal; replica at a new address (no FIN) in %d ms (goal %d ms); four remote producers through a second failover (%s primary after %d ms): %s\n' \
    "$new" "$failover_ms" "$LEASE_MS" "$acked_before_kill" "$old_timeouts" "$partition_acks" "$PARTITION_MESSAGES" "$catch_up_ms" "$moved_ms" "$HEAL_GOAL_MS" "$last" "$remote_failover_ms" "$remote_line"
