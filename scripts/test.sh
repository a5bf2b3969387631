#!/usr/bin/env bash
# Runs the whole DOIN test suite: every unit, integration and doc test of the workspace.
#
# Installs what it needs first (idempotent, a few seconds when already there):
#   - PyTorch 2.13.0 in a Python venv (scripts/setup-torch.sh): the libtorch that tch links;
#   - the pinned Rust toolchain from rust-toolchain.toml (rustup does it on first cargo use).
# The first run compiles the workspace and its dependencies (several minutes on 2 cores).
#
# Tests run under cargo-nextest when it is installed (one process per test, so libtorch's
# process-wide seed and thread settings never leak between tests; a test hung for 5 minutes
# is killed, see scripts/nextest.toml), else under `cargo test`.
# Extra arguments go to the test runner, e.g. `scripts/test.sh -p doin-core`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-torch.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

# The whole workspace, unless the arguments name packages (-p/--package).
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

# Both suites always run; the script fails if either did.
status=0

echo "test.sh: doc tests"
cargo test "${scope[@]}" --doc --no-fail-fast "$@" || status=1

if cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: unit and integration tests (cargo-nextest)"
    cargo nextest run --config-file scripts/nextest.toml "${scope[@]}" --all-targets "$@" || status=1
else
    echo "test.sh: unit and integration tests (cargo test; install cargo-nextest for per-test isolation)"
    cargo test "${scope[@]}" --all-targets --no-fail-fast "$@" || status=1
fi

if [ "$status" -ne 0 ]; then
    echo "test.sh: FAILED (see the failures above)" >&2
fi
exit "$status"
