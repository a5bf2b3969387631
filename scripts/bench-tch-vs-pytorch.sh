#!/usr/bin/env bash
# Trains the same small MLP for the same number of steps with tch (Rust) and with PyTorch
# (Python), with the same intra-op thread count, and prints each one's steps/s and the ratio.
#
#   scripts/bench-tch-vs-pytorch.sh [--steps N] [--threads T] [other mlp_speed options]
#
# Defaults: 3000 steps, 1 thread, window 48 -> 2 x 64 ReLU -> 8, batch 64 (the ts_forecast
# default model). Python comes from the torch venv (DOIN_TORCH_VENV, default
# ~/.cache/doin/torch-venv), the same libtorch tch links against.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh

args=("$@")
if [[ " ${args[*]:-} " != *" --steps "* ]]; then args+=(--steps 3000); fi
if [[ " ${args[*]:-} " != *" --threads "* ]]; then args+=(--threads 1); fi

cargo build --release --quiet -p doin-plugins --example mlp_speed
target_dir="$(cargo metadata --format-version 1 --no-deps | "$DOIN_TORCH_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

tch_line="$("$target_dir/release/examples/mlp_speed" "${args[@]}")"
py_line="$("$DOIN_TORCH_VENV/bin/python" -W ignore scripts/mlp_speed.py "${args[@]}")"
echo "$tch_line"
echo "$py_line"

rate() { sed -n 's/.*steps_per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }
"$DOIN_TORCH_VENV/bin/python" - "$(rate "$tch_line")" "$(rate "$py_line")" <<'PY'
import sys
tch, py = float(sys.argv[1]), float(sys.argv[2])
print(f"ratio tch/pytorch = {tch / py:.2f}x (goal >= 2x for small models)")
PY
