#!/usr/bin/env bash
# Benchmarks sync: a late joiner downloads and validates a chain of BLOCKS blocks (default
# 10,000, with a history of accepted and rejected optimae) from one peer over the network,
# two release `doin-node` processes on loopback. Goal: 10,000 blocks in < 10 s.
#
# 1. `chain_fixture` writes the producer's directory (valid blocks, built directly).
# 2. The producer serves it with p2p on; the joiner starts empty from the same genesis file
#    with `produce_blocks: false` and the producer as its only bootstrap peer.
# 3. Prints the time from the joiner's start until its height reaches the producer's, and
#    blocks per second. Bounded: a few minutes at most.
#   BLOCKS   chain length (default 10000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-torch.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
blocks=${BLOCKS:-10000}
cargo build --release -q -p doin-node --bin doin-node --example chain_fixture

dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
target/release/examples/chain_fixture "$dir/a" "$blocks" 0 >/dev/null
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
a = json.load(open(f"{d}/a/config.json"))
a["p2p"] = {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": False}
a["log_level"] = "warn"
json.dump(a, open(f"{d}/a/config.json", "w"))
PY
target/release/doin-node --config "$dir/a/config.json" 2>"$dir/a.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$dir/a/data/p2p.addr" ] && [ -s "$dir/a/data/http.addr" ] && break; sleep 0.1; done
a_http=$(cat "$dir/a/data/http.addr")
height=$(curl -sf "http://$a_http/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chain_height"])')
python3 - "$dir" "$(cat "$dir/a/data/p2p.addr")" <<'PY'
import json, sys
d, addr = sys.argv[1], sys.argv[2]
a = json.load(open(f"{d}/a/config.json"))
b = {"host": "127.0.0.1", "port": 0, "data_dir": f"{d}/b/data", "log_level": "warn",
     "chain": a["chain"], "domains": a["domains"], "produce_blocks": False,
     "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": False}, "bootstrap_peers": [addr]}
import os; os.makedirs(f"{d}/b", exist_ok=True)
json.dump(b, open(f"{d}/b/config.json", "w"))
PY
start=$(date +%s.%N)
target/release/doin-node --config "$dir/b/config.json" 2>"$dir/b.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$dir/b/data/http.addr" ] && break; sleep 0.05; done
b_http=$(cat "$dir/b/data/http.addr")
for i in $(seq 6000); do
    h=$(curl -sf "http://$b_http/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chain_height"])' 2>/dev/null || echo 0)
    [ "$h" -ge "$height" ] && break
    [ "$i" = 6000 ] && { echo "bench-sync: the joiner reached $h of $height in time" >&2; tail -5 "$dir/b.log" >&2; exit 1; }
    sleep 0.05
done
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'sync of $height blocks over the network (validated, stored): {s:.1f} s, {$height/s:.0f} blocks/s (goal 10,000 blocks < 10 s)')"
