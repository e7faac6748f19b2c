#!/usr/bin/env bash
# The test command of the README: sets up .venv, then runs the fast test set (pass -m slow for the slow one).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ -z "${SCALING_REC_DATA:-}" ] && [ -d ../shared/data ]; then
  export SCALING_REC_DATA="$(cd ../shared/data && pwd)"
fi
export WANDB_MODE="${WANDB_MODE:-offline}"
python -m pytest "$@"
rc=$?
# pytest exits 5 when a selection collects nothing: that is not a failure of the code.
if [ "$rc" -eq 5 ]; then exit 0; fi
exit "$rc"
