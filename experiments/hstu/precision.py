"""bfloat16 against float32 HSTU training on MovieLens-100K (issue 17: "bf16 where it keeps the loss").

MovieLens-100K is the MovieLens file on these machines (ML-1M's ratings are not): the HSTU paper's kind of
data, with timestamps (so the time bias runs) and 1,683 item rows, which the CPU scores densely in chunks
(train.losses.default_scoring): every product model.matmul_dtype='bfloat16' moves is exercised.

Presets:
- small: the reference HSTU of the paper's ML-1M runs (hstu/S: 2 blocks x 1 head x 50, dropout 0.2, batch 128,
  128 negatives, temperature 0.05, history length 200), 50 epochs of 8 steps, evaluated every 10 epochs,
  history items excluded from the ranking (as experiments/hstu/ml1m.py).
- large: the same at the widths of the peers benchmark's large case (benchmarks.peers, hstu_jax_bench's
  'large': embedding 256, 4 blocks x 4 heads x 64), 10 epochs evaluated every 5 (2.5 s a step on the 2-core
  CPU).

Commands (both dtypes; write benchmarks/results/precision_<preset>_cpu.json):
  SCALING_REC_DATA=../shared/data python -m benchmarks.precision --config=experiments/hstu/precision.py:small
  SCALING_REC_DATA=../shared/data python -m benchmarks.precision --config=experiments/hstu/precision.py:large \
      --seeds=0
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference

STEPS_PER_EPOCH = 8  # ML-100K's 943 users at batch 128


def get_config(preset: str = "small") -> ml_collections.ConfigDict:
    if preset not in ("small", "large"):
        raise ValueError(f"unknown preset {preset!r}: use small or large")
    epochs, every = (50, 10) if preset == "small" else (10, 5)
    c = reference("ml-100k", "precision", "hstu", max_len=200, num_epochs=float(epochs), eval_every_epochs=every,
                  steps_per_epoch=STEPS_PER_EPOCH)
    c.eval.exclude_history = True
    c.eval.patience = 0
    c.logging.wandb = False
    if preset == "large":
        c.model.embed_dim, c.model.num_blocks, c.model.num_heads, c.model.qk_dim, c.model.v_dim = 256, 4, 4, 64, 64
    return c
