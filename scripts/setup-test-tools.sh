#!/usr/bin/env bash
# Installs the Debian packages that some tests run as external tools.
#
# Idempotent: when every package is installed it only says so (well under a second).
# Installs with `apt-get install -y --no-install-recommends`, running `apt-get update` only
# when that first install fails (a fresh machine whose package lists are missing or stale).
# Needs root, or sudo without a password prompt; otherwise it prints the command to run and
# fails, and the tests that need a missing tool fail too when DOIN_REQUIRE_TEST_TOOLS=1
# (scripts/test.sh sets it) or skip with a printed reason when it is unset.
#
# To add a tool, add its Debian package to PACKAGES with a comment naming the tests.
set -euo pipefail

PACKAGES=(
    # promtool: `promtool check metrics` validates GET /metrics (doin-node http tests).
    prometheus
    # chromium: headless Chromium loads /dashboard (doin-node tests/dashboard_browser.rs) and
    # measures its first render (scripts/bench-dashboard.sh).
    chromium
)

say() { printf 'setup-test-tools: %s\n' "$*"; }

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian-based system: install these yourself: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "installed already: ${PACKAGES[*]} (nothing to do)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say "missing packages: ${missing[*]}; run as root:" >&2
    say "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt run (a second test.sh, unattended upgrades) instead of failing.
apt=("${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -q)
install() { "${apt[@]}" install --no-install-recommends "${missing[@]}"; }

say "installing ${missing[*]}"
if ! install; then
    say "install failed; updating the package lists and trying again"
    "${apt[@]}" update
    install
fi
say "installed ${missing[*]}"
