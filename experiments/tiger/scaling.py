r"""TIGER scaling on Amazon Beauty: model size x training compute, and codebook size as a scaling axis.

Two questions of the generative-retrieval literature, on the paper's setup (experiments/tiger/beauty.py):
  1. size x compute: a ladder of encoder-decoder widths/depths around the paper's model (4+4 layers,
     d_model 128, 6 x 64 heads, FFN 1024), each trained for several step counts (constant batch 256),
     so that every run has its own training compute C = 3 x forward FLOPs x examples
     (scaling_rec.flops.tiger_forward_flops); the report fits 1 − test Recall@10
     against C on the Pareto frontier and tabulates each fixed-length ladder;
  2. codebook size: the paper's model at one length with 3-level semantic IDs of 64 … 1024 codes per
     level (a larger codebook = longer-tail IDs, fewer collisions, a larger output vocabulary).

Ladder: scaling_rec/sweep/sizes.py's tiger/r0-r3 (which cite their source and state N_dense); paper = rung 2:
| rung | d_model | layers | heads x dim | FFN  |
|------|---------|--------|-------------|------|
| 0    | 64      | 2      | 4 x 32      | 256  |
| 1    | 96      | 3      | 4 x 48      | 512  |
| 2    | 128     | 4      | 6 x 64      | 1024 |
| 3    | 256     | 6      | 8 x 64      | 2048 |

Presets:
  gpu    rungs 0-3 x {5k, 10k, 20k} steps (12 runs) + codebook 64/128/512/1024 at rung 2 x 10k steps (4 runs;
         256 is the ladder's own run), 100 steps per jitted call. About 35-40 minutes of one H200 at the step
         times measured there (8.4 ms per step of 256 for rung 2, benchmarks/results/tiger_beauty_gpu_h200.log).
         The lengths stop at 20k, not the paper's 200k: with this recipe (AdamW 1e-3) the paper's model peaks
         on validation at 10-12k steps on Beauty and tests lower at 29.6k (README), so longer runs would
         measure overfitting rather than the use of compute.
  smoke  two tiny models x 2 lengths on whatever data the base config points at (tests).
Command:
  SCALING_REC_DATA=../shared/data python -m launch.sweep --config=experiments/tiger/scaling.py:gpu \
      --workdir=runs/ --executor=local --workers=1
Not run yet: the GPU lent so far (15 device-minutes per session) went to the Beauty reproduction; one
paper-size run of 20k steps is days of this 2-core CPU.
"""

from __future__ import annotations

import ml_collections

from experiments.tiger.beauty import get_config as beauty_config
from scaling_rec.sweep.sizes import SIZES

LADDER = ("tiger/r0", "tiger/r1", "tiger/r2", "tiger/r3")
SMOKE_LADDER = ("tiger/s0", "tiger/s1")
PRESETS = ("gpu", "smoke")


def get_config(preset: str = "gpu") -> ml_collections.ConfigDict:
    """The paper preset of experiments/tiger/beauty.py (constant learning rate after warm-up: every run's
    length is its only schedule), evaluated once at the end on every test user."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {PRESETS}")
    c = beauty_config("paper")
    c.study = "tiger_scaling"
    c.train.decay_start = 0
    c.train.eval_every = 10**9
    c.eval.update(valid_users=2000, test_users=0)
    if preset == "gpu":
        c.train.update(steps_per_call=100, log_every=200)
    return c


def get_sweep(preset: str = "gpu") -> list[dict]:
    """Points (dotted config keys; 'size' names the rung, 'size_label' the codebook arms in the report)."""
    if preset == "smoke":
        return [{"size": r, "train.num_steps": s} for s in (2, 4) for r in SMOKE_LADDER]
    ladder = [{"size": r, "train.num_steps": s} for s in (5_000, 10_000, 20_000) for r in LADDER]
    codebooks = [{**SIZES[LADDER[2]].overrides(), "size_label": f"tiger/r2-k{k}", "train.num_steps": 10_000,
                  "ids.codebook_size": k} for k in (64, 128, 512, 1024)]
    return ladder + codebooks


def get_analysis(preset: str = "gpu") -> dict[str, str]:
    """launch.analyze flags: 1 − test Recall@10 against training FLOPs on the Pareto frontier."""
    return {"metric": "eval/test/recall@10", "transform": "one_minus", "frontier": "pareto",
            "n_boot": "200" if preset == "gpu" else "0"}
