#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
set +u
# shellcheck disable=SC1091
. "$ROOT/.venv/unipixel_env.sh"
set -u
cd "$ROOT"
exec python -m pytest "$@"
