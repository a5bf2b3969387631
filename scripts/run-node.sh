#!/usr/bin/env bash
# Runs a DOIN node on examples/quickstart.json: one node, solo mode, the quadratic domain.
#
# Installs what it needs first (idempotent): PyTorch 2.13.0 in a Python venv
# (scripts/setup-torch.sh), which the domain plugins use through tch; then builds doin-node
# in release mode (the first build takes a few minutes) and starts it.
# Extra arguments go to the node, e.g. `scripts/run-node.sh --help`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-torch.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

exec cargo run --release -p doin-node -- --config examples/quickstart.json "$@"
