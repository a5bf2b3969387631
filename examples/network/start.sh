#!/usr/bin/env bash
# Starts the three-node example network on loopback (see examples/network/README.md) and
# stops every node it started on Ctrl-C.
#
#   examples/network/start.sh          build (release), then start nodes 1, 2 and 3
#
# The build step is the one of scripts/run-node.sh: scripts/setup-torch.sh (idempotent: it
# installs PyTorch once), `source scripts/env.sh`, `cargo build --release -p doin-node`.
#
# Environment:
#   DOIN_NODE_BIN=path   run this doin-node binary instead of building one
#
# Runs from the repository root whatever the current directory: the configs' relative paths
# (keys, genesis file, ./doin-net-data/nodeN) are resolved from there. Logs go to
# ./doin-net-data/nodeN.log, process ids to ./doin-net-data/nodeN.pid.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
EXAMPLE=examples/network
DATA=./doin-net-data
HTTP_PORTS=(8481 8482 8483)
P2P_PORTS=(9481 9482 9483)

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "${HTTP_PORTS[@]}" "${P2P_PORTS[@]}"; do
    if port_open "$port"; then
        echo "error: 127.0.0.1:$port is already in use (an earlier run still going?)." >&2
        echo "       Stop it first, e.g. with Ctrl-C in its terminal." >&2
        exit 1
    fi
done

if [ -n "${DOIN_NODE_BIN:-}" ]; then
    BIN=$DOIN_NODE_BIN
else
    scripts/setup-torch.sh
    # shellcheck source=scripts/env.sh
    source scripts/env.sh
    echo "building doin-node (release) ..."
    cargo build --release -p doin-node
    BIN="${CARGO_TARGET_DIR:-target}/release/doin-node"
fi
[ -x "$BIN" ] || { echo "error: no doin-node binary at $BIN" >&2; exit 1; }

mkdir -p "$DATA"
PIDS=()    # pids of the nodes still running, "" once one has exited
STOPPING=

# Drops the pids of nodes that have exited (reported once), so that stop() never signals a
# pid that is no longer ours.
reap() {
    local i
    for i in "${!PIDS[@]}"; do
        local pid=${PIDS[$i]}
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            local status=0
            wait "$pid" 2>/dev/null || status=$?
            PIDS[i]=""
            rm -f "$DATA/node$((i + 1)).pid"
            [ -n "$STOPPING" ] || echo "node$((i + 1)) exited (status $status); see $DATA/node$((i + 1)).log"
        fi
    done
}

# Stops every node this script started: SIGTERM (a clean shutdown), SIGKILL after 20 s.
stop() {
    [ -z "$STOPPING" ] || return 0
    STOPPING=1
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    trap '' INT TERM HUP
    reap
    local pid alive i
    for pid in "${PIDS[@]}"; do
        [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    done
    echo
    echo "stopping the nodes ..."
    for ((i = 0; i < 200; i++)); do
        alive=
        for pid in "${PIDS[@]}"; do
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ -n "$alive" ] || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "node (pid $pid) did not stop within 20 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    rm -f "$DATA"/node[123].pid
    echo "stopped; the chains stay in $DATA (delete it to start from genesis again)"
}
# Starts node $1 and waits (up to 60 s) for its HTTP port.
start_node() {
    local n=$1 port=${HTTP_PORTS[$1 - 1]} i
    local log="$DATA/node$n.log"
    "$BIN" --config "$EXAMPLE/node$n.json" >"$log" 2>&1 &
    PIDS[n - 1]=$!
    echo $! >"$DATA/node$n.pid"
    for ((i = 0; i < 600; i++)); do
        if port_open "$port"; then
            echo "node$n up: http://127.0.0.1:$port (pid ${PIDS[n - 1]}, log $log)"
            return 0
        fi
        if ! kill -0 "${PIDS[n - 1]}" 2>/dev/null; then
            echo "error: node$n exited before listening; the end of $log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "error: node$n did not open port $port within 60 s; see $log" >&2
    exit 1
}

trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Node 1 first: nodes 2 and 3 dial its p2p port once, at start.
start_node 1
start_node 2
start_node 3

cat <<EOF

Three producers on one network, chain doin-example-net. Watch (another terminal):

  curl -s localhost:8481/status        # chain_height, tip, peers, balance: compare 8482, 8483
  curl -s localhost:8481/peers         # node 1's connections (2 once they found each other)
  curl -s 'localhost:8481/chain/blocks' | grep -o '"proposer":"[0-9a-f]*"'   # proposers rotate
  curl -s localhost:8481/domains       # the quadratic domain's champion
  curl -s localhost:8483/metrics | grep doin_chain_reorgs_total
  dashboards: http://127.0.0.1:8481/dashboard  :8482/dashboard  :8483/dashboard

Logs: $DATA/node1.log, node2.log, node3.log. Ctrl-C stops all three nodes.
EOF

# Wait for Ctrl-C (or for every node to exit).
while true; do
    reap
    running=
    for pid in "${PIDS[@]}"; do [ -z "$pid" ] || running=1; done
    if [ -z "$running" ]; then
        echo "every node has exited"
        exit 1
    fi
    sleep 1
done
