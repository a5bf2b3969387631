#!/usr/bin/env bash
# Installs openapi-spec-validator into a Python venv, for the doin-node test that validates
# GET /openapi.json (http::tests::more::openapi_document_passes_openapi_spec_validator).
#
# Idempotent: when the venv already has the validator it only says so.
#   DOIN_OPENAPI_VENV   venv location (default: $HOME/.cache/doin/openapi-venv)
#   DOIN_PYTHON         interpreter used to create the venv (default: python3)
# The test reads the same DOIN_OPENAPI_VENV; without the venv it skips with a printed
# reason, or fails when DOIN_REQUIRE_TEST_TOOLS=1.
set -euo pipefail

readonly VALIDATOR_VERSION="0.9.0"
venv="${DOIN_OPENAPI_VENV:-$HOME/.cache/doin/openapi-venv}"
python="${DOIN_PYTHON:-python3}"

say() { printf 'setup-openapi-validator: %s\n' "$*"; }

if [ -x "$venv/bin/openapi-spec-validator" ]; then
    say "installed already in $venv (nothing to do)"
    exit 0
fi
say "creating $venv with openapi-spec-validator $VALIDATOR_VERSION"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "openapi-spec-validator==$VALIDATOR_VERSION"
"$venv/bin/openapi-spec-validator" --help >/dev/null
say "done: $venv/bin/openapi-spec-validator"
