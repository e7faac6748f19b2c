# Sourced by the scripts run on a lent GPU machine (scripts/gpu_*.sh), from the repo root there:
# creates $OUT, installs the wheels carried in .whl/ (Python packages the device image lacks:
# ml-collections 1.1.0, grain 0.2.18, array-record, portpicker, for cp312 manylinux x86_64; the device
# README says how to download them), puts the checkout on PYTHONPATH, points SCALING_REC_DATA at a
# carried .data/ when there is one, and records the GPU and library versions in $OUT/env.txt.
# Set SCALING_REC_COMMIT=$(git rev-parse HEAD) on the call: the device copy's .git can be stale.
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline XLA_PYTHON_CLIENT_PREALLOCATE=false
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${SCALING_REC_DATA:-}" ] && [ -d .data ]; then
  export SCALING_REC_DATA=$PWD/.data
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"
