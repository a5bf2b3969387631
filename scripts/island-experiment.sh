#!/usr/bin/env bash
# The optimizer issue's multi-node experiment with real nodes: 1, 2 and 4 `doin-node`
# processes on loopback, random step, GA and GA + GP (L3), quadratic n = 10 with one shared target, the
# easy target -100 and the hard target -50, every champion verified on chain (commit,
# reveal, quorum vote, verdict) before it counts. Prints median and p10-p90 of rounds and
# wall seconds to the first verified champion at each target, and the ratio to one node.
#
#   scripts/island-experiment.sh            # 20 seeds, rounds paced to 300 ms (about 55 min)
#   scripts/island-experiment.sh --seeds 10 --optimizers random_step --nodes 1,2  # a part
#   scripts/island-experiment.sh --quick    # 2 seeds, rounds paced to 100 ms (under 2 min after the build)
#
# See crates/doin-node/benches/island_experiment.rs for the set-up. The single-node optimizer
# comparison (GA, GP meta-optimizer, Optuna TPE and CMA-ES) is scripts/optimizer-experiment.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
./scripts/setup-torch.sh >/dev/null
# shellcheck source=/dev/null
source scripts/env.sh
cargo bench -q -p doin-node --bench island_experiment -- "$@"
