#!/bin/sh
# Installs the servers repliq-connect's tests run against (they start their own on loopback, with
# their own ports and data directories): redis-server (Redis Streams), nats-server 2.9 (NATS
# JetStream, run with -js), rabbitmq-server 3.10 (RabbitMQ; the tests run its inner script
# /usr/lib/rabbitmq/bin/rabbitmq-server with their own node name) and influxdb 1.6 (InfluxDB line
# protocol over HTTP). Idempotent: does nothing when all are there. About 30-60 s of apt.
set -eu
if command -v redis-server >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1 \
    && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v influxd >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
packages="redis-server nats-server rabbitmq-server influxdb"
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $packages || {
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $packages
}
# The packages may start system-wide servers (6379, 4222, 5672, 8086); the tests do not use them.
if command -v service >/dev/null 2>&1; then
    for s in redis-server nats-server rabbitmq-server influxdb; do
        service "$s" stop >/dev/null 2>&1 || true
    done
fi
