#!/usr/bin/env bash
# Runs the whole DOIN test suite: every unit, integration and doc test of the workspace.
#
# Installs what it needs first (idempotent, a few seconds when already there):
#   - PyTorch 2.13.0 in a Python venv (scripts/setup-torch.sh): the libtorch that tch links;
#   - Debian packages of external tools some tests run (scripts/setup-test-tools.sh);
#   - openapi-spec-validator in a Python venv (scripts/setup-openapi-validator.sh);
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
# Debian packages some tests run (promtool, ...); with DOIN_REQUIRE_TEST_TOOLS=1 such a test
# fails instead of skipping when its tool is still missing.
scripts/setup-test-tools.sh || echo "test.sh: could not install the test tools; the tests that need them will fail" >&2
# openapi-spec-validator in a venv: validates GET /openapi.json (doin-node http tests).
scripts/setup-openapi-validator.sh || echo "test.sh: could not install openapi-spec-validator; the test that needs it will fail" >&2
export DOIN_REQUIRE_TEST_TOOLS=1
# shellcheck source=scripts/env.sh
source scripts/env.sh

# The whole workspace, unless the arguments name packages (-p/--package).
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

# Every step runs; the script fails if any did. nextest goes last so that its summary
# line closes the output.
status=0

echo "test.sh: doc tests"
cargo test "${scope[@]}" --doc --no-fail-fast "$@" || status=1

# Benchmarks are compiled (--all-targets) but not run: their fixtures are sized for
# `cargo bench` (release) and take minutes in a debug build, and nextest would start a bench
# binary once per benchmark, building the fixtures again each time. Run them with
# `cargo bench`.
if cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: unit and integration tests (cargo-nextest)"
    cargo nextest run --config-file scripts/nextest.toml "${scope[@]}" --all-targets \
        -E 'not kind(bench)' "$@" || status=1
else
    echo "test.sh: unit and integration tests (cargo test; install cargo-nextest for per-test isolation)"
    cargo test "${scope[@]}" --all-targets --no-run "$@" || status=1
    cargo test "${scope[@]}" --lib --bins --tests --examples --no-fail-fast "$@" || status=1
fi

if [ "$status" -ne 0 ]; then
    echo "test.sh: FAILED (see the failures above)" >&2
fi
exit "$status"
