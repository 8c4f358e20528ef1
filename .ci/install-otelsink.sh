#!/bin/sh
# Installs the OTLP receiver repliqd's trace test sends spans to: PyPI's `oteltest` (its
# `otelsink`, run on loopback by .ci/otlp_sink.py), pinned, in a venv. The test finds the venv's
# python at $REPLIQ_OTELSINK_PYTHON or, by default, at the path below.
set -eu
OTELTEST_VERSION=0.49.0
venv=${REPLIQ_OTELSINK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/repliq-otelsink-venv}
if "$venv/bin/python" -c 'import oteltest.sink, grpc' 2>/dev/null \
    && "$venv/bin/pip" show oteltest 2>/dev/null | grep -qx "Version: $OTELTEST_VERSION"; then
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "oteltest==$OTELTEST_VERSION"
"$venv/bin/python" -c 'import oteltest.sink, grpc'
echo "oteltest $OTELTEST_VERSION in $venv"
