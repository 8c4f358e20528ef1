#!/bin/sh
# Builds tansu 0.6.0 (a Kafka-protocol broker from crates.io), the broker repliq-connect's Kafka
# tests (tests/kafka.rs) start on loopback, into $HOME/.cache/repliq-tansu/bin/tansu (the tests
# look there, or at $REPLIQ_TANSU). A debug build with SQLite storage only (feature libsql: no
# Postgres, S3 or data-lake stacks); its target directory, under /tmp, is deleted afterwards
# (about 3 GB). Idempotent: does nothing when the binary is there.
set -eu
root="${HOME}/.cache/repliq-tansu"
if [ -x "${root}/bin/tansu" ]; then
    exit 0
fi
target=$(mktemp -d /tmp/repliq-tansu-target.XXXXXX)
trap 'rm -rf "${target}"' EXIT
start=$(date +%s)
cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql \
    --root "${root}" --target-dir "${target}" --debug
echo "tansu built in $(( $(date +%s) - start )) s: ${root}/bin/tansu"
