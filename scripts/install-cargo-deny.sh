#!/usr/bin/env bash
# Installs the pinned cargo-deny (used by .ci/run) from crates.io when it is missing or a
# different version. Building it takes about 3 minutes on 2 cores; a no-op afterwards.
set -euo pipefail

readonly CARGO_DENY_VERSION="0.20.2"

have="$(cargo deny --version 2>/dev/null || true)"
if [ "$have" = "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "install-cargo-deny: $have already installed"
    exit 0
fi
echo "install-cargo-deny: found '${have:-nothing}', installing cargo-deny $CARGO_DENY_VERSION"
start=$SECONDS
cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
echo "install-cargo-deny: installed in $((SECONDS - start)) s"
