# shellcheck shell=bash
# Build and run environment for DOIN: where tch/torch-sys find libtorch.
#
# Source it (do not execute it):   source scripts/env.sh
#
# It points torch-sys (the libtorch bindings under tch 0.26) at the PyTorch 2.13 that
# scripts/setup-torch.sh installs into a Python virtual environment:
#   DOIN_TORCH_VENV        the venv (default: $HOME/.cache/doin/torch-venv)
#   VIRTUAL_ENV, PATH      the venv's python comes first, so torch-sys runs `python`
#                          from it (torch-sys uses `python` when VIRTUAL_ENV is set)
#   LIBTORCH_USE_PYTORCH=1 torch-sys asks that python for torch's include and lib
#                          directories, its C++ ABI and its version (must be 2.13.x)
#
# If LIBTORCH is already set (a libtorch you installed yourself, e.g. a CPU-only zip from
# pytorch.org), this file leaves it alone and does not touch the venv settings.
#
# Nothing here is needed at run time: the crates' build scripts bake the libtorch
# directory into every binary and test executable as an rpath (see docs/setup.md).

if [ -n "${LIBTORCH:-}" ]; then
    unset LIBTORCH_USE_PYTORCH
else
    export DOIN_TORCH_VENV="${DOIN_TORCH_VENV:-$HOME/.cache/doin/torch-venv}"
    export VIRTUAL_ENV="$DOIN_TORCH_VENV"
    case ":$PATH:" in
        *":$DOIN_TORCH_VENV/bin:"*) ;;
        *) export PATH="$DOIN_TORCH_VENV/bin:$PATH" ;;
    esac
    export LIBTORCH_USE_PYTORCH=1
fi
