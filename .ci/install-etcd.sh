#!/bin/sh
# Installs what repliqd's etcd tests and build need: etcd (the tests start a real one on
# loopback) and protoc (the etcd-client crate compiles etcd's protos at build time).
set -eu
if command -v etcd >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y etcd-server protobuf-compiler || {
    apt-get update
    apt-get install -y etcd-server protobuf-compiler
}
