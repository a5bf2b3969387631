#!/usr/bin/env bash
# Installs PyTorch 2.13.0 (the libtorch that tch 0.26 links against) into a Python venv.
#
# Idempotent: when the venv already reports torch 2.13.x it only says so (about 2 s).
#   DOIN_TORCH_VENV   venv location (default: $HOME/.cache/doin/torch-venv)
#   DOIN_PYTHON       interpreter used to create the venv (default: python3, >= 3.10)
#   LIBTORCH          if set, you manage libtorch yourself and this script does nothing
#
# The PyPI wheel for Linux x86_64 is the CUDA build (about 1 GB for torch plus about 3 GB
# of NVIDIA runtime wheels). It runs on machines without a GPU; tch then uses the CPU.
set -euo pipefail

readonly TORCH_VERSION="2.13.0"
venv="${DOIN_TORCH_VENV:-$HOME/.cache/doin/torch-venv}"
python="${DOIN_PYTHON:-python3}"

say() { printf 'setup-torch: %s\n' "$*"; }

if [ -n "${LIBTORCH:-}" ]; then
    say "LIBTORCH is set ($LIBTORCH): using that libtorch, not installing PyTorch"
    exit 0
fi

# Prints the torch version the venv imports, or nothing.
installed_version() {
    [ -x "$venv/bin/python" ] || return 0
    "$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true
}

is_wanted() {
    case "$1" in
        "${TORCH_VERSION%.*}".*) return 0 ;;
        *) return 1 ;;
    esac
}

current="$(installed_version)"
if is_wanted "$current"; then
    say "torch $current already installed in $venv (nothing to do)"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
# Two scripts started at once (test.sh and run-node.sh) must not install twice.
exec 9>"$venv.lock"
flock 9
current="$(installed_version)"
if is_wanted "$current"; then
    say "torch $current installed in $venv by another process (nothing to do)"
    exit 0
fi

start=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
    say "creating Python venv at $venv with $("$python" --version 2>&1)"
    if ! "$python" -m venv "$venv"; then
        say "error: '$python -m venv' failed; install Python >= 3.10 with the venv module" >&2
        say "       (Debian: apt-get install python3-venv) or set DOIN_PYTHON" >&2
        exit 1
    fi
fi
if [ -n "$current" ]; then
    say "venv has torch $current; replacing it with torch==$TORCH_VERSION"
else
    say "installing torch==$TORCH_VERSION into $venv (about 4 GB download)"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    "torch==$TORCH_VERSION"

current="$(installed_version)"
if ! is_wanted "$current"; then
    say "error: after installing, the venv imports torch '${current:-nothing}'" >&2
    exit 1
fi
say "installed torch $current in $venv in $((SECONDS - start)) s"
