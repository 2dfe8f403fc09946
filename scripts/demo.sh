#!/usr/bin/env bash
# Set up (idempotent), then run the offline demo: synthetic camera + node + a question, a click
# and a few seconds of tracking; answer, masks and overlays (PNG) go to out/demo/.
#   bash scripts/demo.sh                                   # tiny built-in model (untrained)
#   bash scripts/demo.sh model:=PolyU-ChenLab/UniPixel-3B  # the published model
# Other arguments: device:= dtype:= decoder_backend:= out:= track_seconds:= seed:= timeout:= domain:=
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
set +u
# shellcheck disable=SC1091
. "$ROOT/.venv/unipixel_env.sh"
set -u
cd "$ROOT"
exec python -m unipixel_ros.demo "$@"
