#!/usr/bin/env bash
# The README's first command on a bare machine: a fresh `git clone` of this checkout (its HEAD
# commit) into a temporary directory, a cold target directory, and `protoc` unusable
# (`PROTOC=/bin/false`, which prost's build scripts obey, and a failing `protoc` first on PATH).
# Checks the line the README says it prints, and that the build compiled none of the daemon's
# stack (so it cannot need `protoc`). Prints the cold build time and the machine's load.
# The crates.io registry cache (~/.cargo) is not cleared: downloads are not what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# The first command of the Quick start and the line it prints, as the README writes them.
IFS=$'\t' read -r command expected < <(python3 - README.md <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", text, re.S).group(1)
lines = block.splitlines()
i = next(i for i, l in enumerate(lines) if l.strip() and not l.lstrip().startswith("#"))
prints = re.match(r"#\s*prints:\s*(.*)", lines[i + 1].strip())
print(lines[i].strip() + "\t" + prints.group(1).strip())
PY
)
case "$command" in
    "cargo "*) ;;
    *) echo "bare-first-run: the first README command is not a cargo command: $command"; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q --no-local "$repo" "$tmp/repliq"
mkdir "$tmp/bin"
ln -s /bin/false "$tmp/bin/protoc"

echo "bare-first-run: $command (fresh clone of $(git -C "$repo" rev-parse --short HEAD), cold target, PROTOC=/bin/false)"
echo "bare-first-run: load before: $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure: $(head -n1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
set +e
TIMEFORMAT='%R %U %S'
{
    time (
        cd "$tmp/repliq"
        # shellcheck disable=SC2086 # the README's command, split into words as a shell would
        PATH="$tmp/bin:$PATH" PROTOC=/bin/false CARGO_TARGET_DIR="$tmp/target" \
            CARGO_TERM_COLOR=never $command > "$tmp/out" 2> "$tmp/err"
    )
} 2> "$tmp/time"
status=$?
set -e
read -r wall user sys < "$tmp/time"
cpu=$(python3 -c "print('%.1f' % ($user + $sys))")
echo "bare-first-run: exit $status after $wall s wall, $cpu s of CPU (user + sys); load after: $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure: $(head -n1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
if [ "$status" != 0 ]; then
    tail -n 40 "$tmp/err"
    exit 1
fi
if ! grep -qxF "$expected" "$tmp/out"; then
    echo "bare-first-run: expected the line \`$expected\`, got:"
    cat "$tmp/out"
    exit 1
fi
echo "bare-first-run: printed \`$expected\`"

# Built only what it uses: none of the daemon's or gRPC's crates.
built=$(ls "$tmp/target/debug/.fingerprint" | sed 's/-[0-9a-f]*$//' | sort -u)
echo "bare-first-run: $(wc -l <<<"$built") crates compiled"
for crate in repliqd tonic prost etcd-client kube k8s-openapi axum hyper clap; do
    if grep -qx "$crate" <<<"$built"; then
        echo "bare-first-run: the demo compiled $crate"
        exit 1
    fi
done
