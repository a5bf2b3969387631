#!/usr/bin/env bash
# Installs Optuna (with CMA-ES) from PyPI into a venv outside the repository, once, and
# prints the venv's python. Exits non-zero (with a message) when it cannot be installed.
#
#   PY="$(scripts/setup-optuna.sh)"
set -euo pipefail

VENV="$HOME/.cache/doin/optuna-venv"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import optuna, cmaes" 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
echo "installing optuna into $VENV ..." >&2
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install -q optuna cmaes >&2
echo "$VENV/bin/python"
