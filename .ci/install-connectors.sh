#!/bin/sh
# Installs the servers repliq-connect's tests run against (they start their own on loopback):
# redis-server (Redis Streams sink and source). Idempotent: does nothing when it is there.
set -eu
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends redis-server || {
    apt-get update
    apt-get install -y --no-install-recommends redis-server
}
# The package starts a system-wide server on 6379; the tests do not use it.
if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
