r"""One architecture (HSTU) at several scales on Amazon Beauty, same data and same epochs.

Command:
  SCALING_REC_DATA=../shared/data python -m launch.sweep \
      --config=experiments/hstu/scales.py:quick --workdir=runs/ --executor=inline
Presets (a fixed size ladder from scaling_rec/sweep/sizes.py; every run trains the same epochs):
  quick  hstu/XS, S, M (N_dense 5k, 25k, 101k) × 1 epoch, one evaluation on 5,000 users.
  full   hstu/XS, S, M, L (up to 657k) × 50 epochs, evaluation every 2 epochs, early stop (patience 5).
Runtime (estimated from measured step rates on the shared 2-core CPU, 175 steps per epoch at
≈ 12 / 6 / 3 steps/s for XS / S / M plus compilation and evaluation): quick ≈ 3-4 min; full ≈ 6 h
on the CPU, under 30 min on one H100.
Expected result: validation cross-entropy falls and NDCG@10 rises with N_dense at a fixed number of
epochs, flattening by hstu/M–L on a dataset this small (198k actions); quick mainly shows the
ordering after one epoch.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import quick_eval, reference

LADDERS = {"quick": ["hstu/XS", "hstu/S", "hstu/M"], "full": ["hstu/XS", "hstu/S", "hstu/M", "hstu/L"]}


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    if preset not in LADDERS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(LADDERS)}")
    c = reference("amazon-beauty", "hstu_scales", "hstu", steps_per_epoch=175)
    if preset == "quick":
        c.train.num_epochs = 1.0
        quick_eval(c)
    return c


def get_sweep(preset: str = "quick") -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"sizes": LADDERS[preset]})
