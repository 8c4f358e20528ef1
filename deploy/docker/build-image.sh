#!/usr/bin/env bash
# Builds the repliq node image from this checkout: static binaries first, then a `FROM scratch`
# image from a staging directory. Nothing is downloaded except crates (cargo) and nothing is pulled.
#
#   deploy/docker/build-image.sh [--tag IMAGE:TAG] [--no-image] [--print-bin-dir]
#
#   --tag T          image reference to build (default: repliq:<workspace version>)
#   --no-image       build and stage the binaries only
#   --print-bin-dir  print the directory of the static binaries on stdout at the end
#
# Environment:
#   REPLIQ_STATIC_TARGET_DIR   cargo target dir of the static build (default: <repo>/target/static,
#                              kept apart from the ordinary target dir so the two never rebuild
#                              each other's artifacts)
#   REPLIQ_EXTRA_CARGO_ARGS    more `-p PKG --bin BIN` selections built in the same cargo call with
#                              the same flags (deploy-check uses it for a test helper)
#
# The daemon lives in package `repliqd` (directory repliqd/) when that exists, else in `repliq`;
# both provide the binaries `repliqd` and `repliq`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tag=""
make_image=1
print_bin_dir=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --no-image) make_image=0; shift ;;
        --print-bin-dir) print_bin_dir=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

triple=x86_64-unknown-linux-gnu
target_dir=${REPLIQ_STATIC_TARGET_DIR:-$repo/target/static}
if [ -f "$repo/repliqd/Cargo.toml" ]; then pkg=repliqd; else pkg=repliq; fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$repo/Cargo.toml" | head -n1)
version=${version:-0.0.0-dev}
revision=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
tag=${tag:-repliq:$version}

# --target makes RUSTFLAGS apply to the binaries only, not to build scripts and proc macros
# (which must stay dynamically linked to be loaded by rustc). The profile overrides leave
# Cargo.toml alone: no debug info (the release profile keeps line tables for benchmarks) and
# stripped symbols, which is most of the image size. The image has etcd and Kubernetes support
# (repliqd's features `etcd` and `kubernetes`, named here so that the image keeps them even if the
# crate's defaults change; etcd-client's build script needs `protoc`).
features=
[ "$pkg" = repliqd ] && features="--features repliqd/etcd,repliqd/kubernetes"
echo "build-image: cargo build -p $pkg $features (static, $triple) into $target_dir" >&2
# shellcheck disable=SC2086 # REPLIQ_EXTRA_CARGO_ARGS is a list of words on purpose
(
    cd "$repo"
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --target "$triple" --target-dir "$target_dir" \
            -p "$pkg" --bin repliqd --bin repliq ${features:-} \
            ${REPLIQ_EXTRA_CARGO_ARGS:-} >&2
)
bin_dir=$target_dir/$triple/release

for b in repliqd repliq; do
    # A dynamically linked binary would fail in the empty image with a confusing "no such file".
    if LC_ALL=C readelf -lW "$bin_dir/$b" | grep -q 'program interpreter'; then
        echo "build-image: $bin_dir/$b is dynamically linked; crt-static did not apply" >&2
        exit 1
    fi
done

if [ "$make_image" = 1 ]; then
    context=$target_dir/image-context
    rm -rf "$context"
    mkdir -p "$context/bin" "$context/data"
    cp -R "$repo/deploy/docker/rootfs" "$context/rootfs"
    cp "$bin_dir/repliqd" "$bin_dir/repliq" "$context/bin/"
    chmod 0755 "$context/bin/repliqd" "$context/bin/repliq"
    # Files in the image: readable by everyone, writable by nobody but root.
    find "$context/rootfs" -type d -exec chmod 0755 {} +
    find "$context/rootfs" -type f -exec chmod 0644 {} +
    chmod 0755 "$context/data"
    echo "build-image: docker build -t $tag" >&2
    DOCKER_BUILDKIT=0 docker build --quiet --force-rm \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
        -f "$repo/deploy/docker/Dockerfile" -t "$tag" "$context" >&2
    echo "build-image: built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)" >&2
fi

if [ "$print_bin_dir" = 1 ]; then
    echo "$bin_dir"
fi
