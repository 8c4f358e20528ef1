#!/usr/bin/env bash
# Supply chain: licenses compatible with GPL-3.0-or-later, crates.io as the only source, no
# wildcard requirements, duplicate versions listed (deny.toml says why each rule is what it is).
# Installs cargo-deny (pinned, from crates.io) if this machine has another version or none.
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qF "$DENY_VERSION"; then
    started=$SECONDS
    cargo install cargo-deny --version "$DENY_VERSION" --locked
    echo "deny: installed cargo-deny $DENY_VERSION in $((SECONDS - started)) s"
fi
# Advisories need the RustSec database from GitHub, which these machines cannot reach (deny.toml).
cargo deny --all-features check --hide-inclusion-graph bans licenses sources
