#!/usr/bin/env bash
# Benchmarks the dashboard's first render with 10,000 blocks in the chain (goal < 1 s).
#
# 1. Builds the release node and the `chain_fixture` example, which writes a node directory
#    holding a valid chain of BLOCKS blocks (default 10,000) with a history of accepted and
#    rejected optimae (built and stored directly: a few seconds instead of hours of mining).
# 2. Starts the node on it (a free loopback port), checks the height.
# 3. Loads /dashboard RUNS times (default 5; the first with the browser cache disabled) in
#    headless Chromium driven over the DevTools protocol (scripts/bench/
#    dashboard_first_render.py) and prints the page's own first-render figure:
#    performance.now() since navigation start when the first full render was painted.
# Needs chromium (scripts/setup-test-tools.sh) and python3. Bounded: about a minute once built.
#   BLOCKS   chain length (default 10000)
#   RUNS     page loads (default 5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-torch.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "bench-dashboard: chromium is missing (scripts/setup-test-tools.sh)" >&2; exit 1; }
blocks=${BLOCKS:-10000}

cargo build --release -q -p doin-node --bin doin-node --example chain_fixture

dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/examples/chain_fixture "$dir" "$blocks" "$port" >/dev/null

target/release/doin-node --config "$dir/config.json" 2>"$dir/node.log" &
pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/status" >/dev/null && break
    sleep 0.1
done
height=$(curl -sf "http://127.0.0.1:$port/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chain_height"])')
accepted=$(curl -sf "http://127.0.0.1:$port/domains/quadratic/history?verdicts=all&limit=1000" \
    | python3 -c 'import json,sys; e=json.load(sys.stdin)["entries"]; print(sum(x["verdict"]=="accepted" for x in e), "accepted,", sum(x["verdict"]!="accepted" for x in e), "rejected")')
echo "node: height $height, quadratic history: $accepted"
history_ms=$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/domains/quadratic/history?verdicts=all&limit=500")
echo "GET /domains/quadratic/history?verdicts=all&limit=500: $(python3 -c "print(round($history_ms * 1000, 1))") ms"

python3 scripts/bench/dashboard_first_render.py "$chromium" "http://127.0.0.1:$port/dashboard" "${RUNS:-5}"
