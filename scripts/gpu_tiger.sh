#!/usr/bin/env bash
# TIGER on Amazon Beauty on a lent GPU (issue 8), run from the repo root in one call: the 'gpu' preset
# of experiments/tiger/beauty.py (the paper's model and batch, semantic IDs built there) trains for
# TIGER_S seconds (default 420), then is tested on every user; benchmarks.tiger_beauty writes
# $OUT/tiger_beauty_gpu.json (learning curve, where it stands against the paper) and $OUT/tiger.log
# (TIGER_PRESET=tiny: a smoke test of this script).
# The data travel in .data/ (ignored by git), made here once with
#   mkdir -p .data && cp -r ../shared/data/amazon-beauty-s3rec ../shared/data/amazon-beauty-meta .data/
#   echo /.data/ >> .git/info/exclude
# and the call carries [".whl", ".data"]. Environment and wheels: scripts/device_env.sh.
set -u
source scripts/device_env.sh
timeout "${TIGER_WALL_S:-560}" python3 -m benchmarks.tiger_beauty --presets="${TIGER_PRESET:-gpu}" --workdir=/tmp/runs/tiger \
  --time_limit_s="${TIGER_S:-420}" --out="$OUT/tiger_beauty_gpu.json" 2>&1 \
  | grep -v '^[IW][0-9]\{4\} ' | tee "$OUT/tiger.log"
