r"""HSTU and SASRec on Amazon Beauty (5-core, S3-Rec form) with the HSTU reference recipe.

Command:
  SCALING_REC_DATA=../shared/data python -m launch.train \
      --config=experiments/hstu/beauty.py:hstu --workdir=runs/
Presets: tiny (hstu/S, 20 steps, 1,000 evaluation users: a smoke test), sasrec, hstu, hstu_large
(experiments/hstu/common.py: embed 50, max_len 50, dropout 0.2, batch 128, lr 1e-3, 128 negatives,
temperature 0.05; hstu_large = 8 blocks × 2 heads × 25). Length: 50 epochs, evaluation every 2
epochs, early stop after 5 evaluations without validation NDCG@10 improvement; change it with
--config.train.num_epochs=... (the lead tunes it for the reproduction, experiments/hstu/reproduce.py,
which uses SASRec's Amazon dropout 0.5 instead of 0.2).

Runtime on the shared 2-core CPU: tiny 15 s of CPU time, most of it compiling (measured: 91 s wall
while the machine ran at load 18); hstu ≈ 40 s per epoch plus ≈ 10 s per evaluation, so ≈ 45 min
for 50 epochs (less with early stopping); hstu_large ≈ 3×.
Expected result (not yet measured at full length here): test NDCG@10 ≈ 0.03 and HR@10 ≈ 0.06 for
sasrec (Rajput et al. 2023, Table 1, SASRec: 0.0318 / 0.0605), hstu at least as good; tiny only
checks the pipeline (measured after 20 steps: HR@200 = 0.021, NDCG@10 ≈ 0).
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference


def get_config(preset: str = "hstu") -> ml_collections.ConfigDict:
    return reference("amazon-beauty", "hstu_beauty", preset, steps_per_epoch=175)
