#!/usr/bin/env bash
# The main job of the README: a small real scaling sweep end to end (train, fit, plot) on Amazon Beauty.
# Sets up .venv from requirements.txt first. Extra flags go to launch.sweep (e.g. --executor=local --workers=2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ -z "${SCALING_REC_DATA:-}" ] && [ -d ../shared/data ]; then
  export SCALING_REC_DATA="$(cd ../shared/data && pwd)"
fi
export WANDB_MODE="${WANDB_MODE:-offline}"
exec python -m launch.sweep --config=experiments/hstu/isoflop.py:quick --workdir="${WORKDIR:-runs}" --executor=inline "$@"
