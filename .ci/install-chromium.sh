#!/bin/sh
# Installs headless Chromium (Debian's `chromium`) and a font for the console tests
# (repliqd/tests/console_*.rs load the daemon's /ui page in it). Idempotent: does nothing when
# `chromium` is there.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium fonts-dejavu-core || {
    apt-get update
    apt-get install -y --no-install-recommends chromium fonts-dejavu-core
}
