#!/bin/sh
# Installs the servers repliq-connect's tests run against (they start their own on loopback):
# redis-server (Redis Streams sink and source) and nats-server 2.9 (NATS JetStream, run with -js).
# Idempotent: does nothing when both are there.
set -eu
if command -v redis-server >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends redis-server nats-server || {
    apt-get update
    apt-get install -y --no-install-recommends redis-server nats-server
}
# The packages may start system-wide servers (6379, 4222); the tests do not use them.
if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service nats-server stop >/dev/null 2>&1 || true
fi
