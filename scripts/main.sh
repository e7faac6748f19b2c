#!/usr/bin/env bash
# The main job of the README: an HSTU IsoFLOP study on known-answer data (experiments/hstu/known_answer.py
# explains why not real data on a CPU budget): sets up .venv, trains 32 runs, fits L(C), L(N, D) and the
# IsoFLOP optima, and writes the report, with the true loss floor beside the fitted one, to
# docs/example_quick_report/ (REPORT_OUT to change). Extra flags go to launch.sweep (e.g. --executor=local).
# Real data instead: python -m launch.sweep --config=experiments/hstu/isoflop.py:quick --workdir=runs
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export WANDB_MODE="${WANDB_MODE:-offline}"
WORKDIR="${WORKDIR:-runs}"
CONFIG=experiments/hstu/known_answer.py:quick
python -m launch.sweep --config="$CONFIG" --workdir="$WORKDIR" --executor=inline --noanalyze "$@"
python -m benchmarks.known_answer_report --config="$CONFIG" --study="$WORKDIR/hstu_known_answer_quick" \
  --out="${REPORT_OUT:-docs/example_quick_report}"
