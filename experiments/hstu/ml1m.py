r"""The HSTU reference on MovieLens-1M (needs ratings.dat; ../shared/data here has only movies/users).

Command (on a machine whose data directory or cache has ml-1m/ratings.dat, or with internet):
  python -m launch.train --config=experiments/hstu/ml1m.py:hstu --workdir=runs/
Presets: tiny (ML-100K, which is here, 20 steps: a smoke test of the ML path), sasrec, hstu,
hstu_large: the reference settings of facebookresearch/generative-recommenders configs/ml-1m/
(embed 50, max_len 200, dropout 0.2, batch 128, lr 1e-3 betas (0.9, 0.98), 128 negatives,
temperature 0.05, history items excluded from the ranking, 101 epochs, evaluation every epoch;
hstu_large = 8 blocks × 2 heads × 25). ML-1M has timestamps, so HSTU uses its time bias.

Runtime: an H100 runs 101 epochs (48 steps each) in minutes; the 2-core CPU needs hours.
Expected result (Zhai et al. 2024, Table 2, ML-1M, sampled softmax): test HR@10 / NDCG@10 =
0.2853 / 0.1603 (sasrec), 0.3097 / 0.1720 (hstu), 0.3294 / 0.1893 (hstu_large).
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference


def get_config(preset: str = "hstu") -> ml_collections.ConfigDict:
    dataset = "ml-100k" if preset == "tiny" else "ml-1m"
    c = reference(dataset, "hstu_ml1m", preset, max_len=200, num_epochs=101.0, eval_every_epochs=1,
                  steps_per_epoch=48)
    c.eval.exclude_history = True
    if preset != "tiny":
        c.eval.patience = 0
    return c
