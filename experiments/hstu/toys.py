r"""HSTU and SASRec on Amazon Toys and Games (5-core, S3-Rec form) with the HSTU reference recipe.

Command:
  SCALING_REC_DATA=../shared/data python -m launch.train \
      --config=experiments/hstu/toys.py:hstu --workdir=runs/
Presets as in experiments/hstu/beauty.py: tiny, sasrec, hstu, hstu_large (embed 50, max_len 50,
dropout 0.2, batch 128, lr 1e-3, 128 negatives, temperature 0.05); 50 epochs, evaluation every 2
epochs (152 steps each), early stop after 5 evaluations without improvement.

Runtime on the shared 2-core CPU: tiny ≈ 15 s of CPU time (as Beauty's); hstu ≈ 35 s per epoch
plus ≈ 9 s per evaluation.
Expected result (not yet measured at full length here): test NDCG@10 ≈ 0.037 and HR@10 ≈ 0.068
for sasrec (Rajput et al. 2023, Table 1, SASRec: 0.0374 / 0.0675), hstu at least as good.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference


def get_config(preset: str = "hstu") -> ml_collections.ConfigDict:
    return reference("amazon-toys", "hstu_toys", preset, steps_per_epoch=152)
