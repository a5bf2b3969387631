#!/usr/bin/env bash
# Benchmarks paid inference on a solo node: wrk sends pre-signed vouchers (one payment
# channel per connection) to POST /inference on the quadratic domain and reports requests/s
# and latency (goal >= 10,000 requests/s, p99 < 10 ms on 2 cores), then checks that the node
# holds exactly the vouchers it answered. Bounded: about a minute.
#   DURATION      wrk duration (default 10s)
#   CONNECTIONS   connections = wrk threads = channels (default 16)
#   DOMAIN_CONFIG the domain's JSON (default: quadratic, 10 dimensions, target -50)
#   INPUT         one query's input_data (default: built from the offer's input shape)
#   FEATURES      cargo features of the node (e.g. "torch" for ts_forecast)
#   VOUCHER_FSYNC inference.voucher_fsync (default true: fsync every group commit)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-torch.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
command -v wrk >/dev/null || { echo "bench-inference: wrk is missing (apt-get install wrk)" >&2; exit 1; }
duration=${DURATION:-10s}
conns=${CONNECTIONS:-16}
domain_config=${DOMAIN_CONFIG:-'{"domain_id": "quadratic", "optimize": true, "evaluate": true, "optimization_plugin": "quadratic", "target_performance": -50.0}'}
domain=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["domain_id"])' "$domain_config")
cargo build --release -q -p doin-node ${FEATURES:+--features "$FEATURES"}
cargo build --release -q -p doin-client --example presign_vouchers

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
price=1000
cat > "$dir/config.json" <<JSON
{"host": "127.0.0.1", "port": $port, "data_dir": "$dir/data", "log_level": "warn",
 "chain": {"solo_mode": true, "target_block_time_ms": 500, "max_block_interval_ms": 1000},
 "domains": [$domain_config],
 "inference": {"mode": "paid", "price": $price, "voucher_fsync": ${VOUCHER_FSYNC:-true}}}
JSON
target/release/doin-node --config "$dir/config.json" 2>"$dir/node.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
url="http://127.0.0.1:$port"
wallet() { target/release/doin-node wallet --node "$url" "$@"; }

# Measure a stable model: wait until the domain reached its target (the optimizer stops, so
# the champion, and with it the input shape, no longer changes) and its model is served.
echo "waiting for $domain to converge and its model to serve..."
for i in $(seq 600); do
    ready=$(python3 -c '
import json, sys, urllib.request
get = lambda p: json.load(urllib.request.urlopen(sys.argv[1] + p))
offers = get("/inference")["offers"]
domains = get("/status")["domains"]
print(all(o["ready"] for o in offers) and all(d["converged"] for d in domains))' "$url" 2>/dev/null || echo False)
    [ "$ready" = True ] && break
    [ "$i" = 600 ] && { echo "no model after 300 s" >&2; tail "$dir/node.log" >&2; exit 1; }
    sleep 0.5
done

# One query's input, from the shape the served model describes in GET /inference.
input=${INPUT:-$(curl -sf "$url/inference" | python3 -c '
import json, math, sys
shape = json.load(sys.stdin)["offers"][0]["input"]
if "features" in shape:
    print(json.dumps({"features": [0.5 * (i % 5) - 1 for i in range(shape["features"])]}))
else:
    print(json.dumps({"window": [math.sin(i / 3) + 0.01 * i for i in range(shape["window"])]}))
')}
echo "input_data: ${input:0:120}"

# A funded client with one channel per connection, and enough pre-signed vouchers for
# 40,000 requests/s over $duration (more than this machine serves).
target/release/doin-node keygen "$dir/client.key" >/dev/null
client=$(target/release/doin-node show-id "$dir/client.key")
wallet --key "$dir/data/identity.key" transfer --to "$client" --amount 100 >/dev/null
seconds=${duration%s}
per_channel=$(( 40000 * seconds / conns + 100 ))
target/release/examples/presign_vouchers "$url" "$dir/client.key" "$dir/vouchers" "$conns" \
    "$per_channel" "$domain" "$input"

VOUCHER_DIR="$dir/vouchers" wrk -t"$conns" -c"$conns" -d"$duration" --latency \
    -s scripts/bench/inference.lua "$url" | tee "$dir/wrk.txt"
rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
p50=$(awk '$1 == "50%" {print $2}' "$dir/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")
total=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
failed=$(awk '/non-200 answers/ {print $3}' "$dir/wrk.txt")

# Every answered query is paid: the vouchers the node holds add up to the answers.
held=$(curl -sf "$url/channels?account=$client" | python3 -c 'import json,sys; print(sum(c.get("queries", 0) for c in json.load(sys.stdin)["channels"]))')
echo
echo "paid POST /inference ($domain, $conns channels): ${rps} requests/s, p50 ${p50}, p99 ${p99} (goal >= 10000 requests/s, p99 < 10ms)"
echo "answers: $total ($failed not 200); paid queries held by the node: $held (wrk does not count the last in-flight answer of each connection)"
echo "voucher_fsync: ${VOUCHER_FSYNC:-true}"
[ "$failed" = 0 ] || { echo "bench-inference: $failed answers were not 200" >&2; exit 1; }
