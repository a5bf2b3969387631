#!/usr/bin/env bash
# Benchmarks a running solo node: `GET /status` throughput and latency with wrk
# (goal >= 20,000 requests/s, p99 < 5 ms with -t2 -c16 on 2 cores) and idle RSS
# (goal < 60 MB). Builds the release binary, runs the node on a temporary data directory and
# a free loopback port, prints the figures, and stops the node. Bounded: about 40 seconds.
#   DURATION   wrk duration (default 10s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-torch.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
command -v wrk >/dev/null || { echo "bench-node: wrk is missing (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p doin-node

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/config.json" <<JSON
{"node_label": "bench", "host": "127.0.0.1", "port": $port, "data_dir": "$dir/data",
 "chain": {"solo_mode": true, "target_block_time_ms": 500, "max_block_interval_ms": 1000},
 "domains": [{"domain_id": "quadratic", "optimize": true, "evaluate": true,
              "optimization_plugin": "quadratic", "target_performance": -50.0}]}
JSON
target/release/doin-node --config "$dir/config.json" 2>"$dir/node.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT

for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/status" >/dev/null && break
    sleep 0.1
done
# Let the optimizer converge and the node settle into its idle state.
sleep 8
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
height=$(curl -sf "http://127.0.0.1:$port/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chain_height"])')
echo "node: pid $pid, height $height, idle RSS $((rss_kb / 1024)) MiB"

wrk -t2 -c16 -d"${DURATION:-10s}" --latency "http://127.0.0.1:$port/status" | tee "$dir/wrk.txt"
rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")
echo
echo "GET /status: ${rps} requests/s, p99 ${p99} (goal >= 20000 requests/s, p99 < 5ms)"
echo "idle RSS: $((rss_kb / 1024)) MiB (goal < 60 MiB)"
