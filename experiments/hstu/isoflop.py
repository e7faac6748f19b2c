r"""IsoFLOP study of HSTU (and SASRec) on Amazon Beauty: which model size is best at each budget C?

Command (the README's main command: trains, fits and plots):
  SCALING_REC_DATA=/work/shared/data python -m launch.sweep \
      --config=experiments/hstu/isoflop.py:quick --workdir=runs/ --executor=inline
  (another dataset: --config.data.name=amazon-toys; report: runs/hstu_isoflop/report/report.md)

Presets (sizes from scaling_rec/sweep/sizes.py; every run gets train.flops_budget = C and the loop
turns C into steps with scaling_rec/flops.py, stopping at the first step with spent >= C):
  quick  3 budgets (5e9, 1e10, 2e10 FLOPs) × hstu/XS, S, M (N_dense 5k, 25k, 101k) = 9 runs, one
         evaluation at the end on the first 5,000 users. Training-FLOPs per Beauty example are
         0.33M / 1.12M / 3.83M, so C = 1e10 is 235 / 70 / 20 steps of 128 users.
  full   5 budgets 1e10 … 1e12 (two orders of magnitude, ×√10 apart) × 3-4 sizes per budget
         (shifting up with C), HSTU and SASRec side by side = 34 runs, evaluation every 2 epochs
         over all users, model selected on validation.
Runtime: quick ≈ 8 min on the shared 2-core CPU (measured 2026-11-25, see the sweep's overhead
line); full ≈ 1 h on one H100, days on the CPU.
Expected result: quick shows the pipeline end to end (fits on 9 points are loose; on budgets this
small the smallest model is usually best, so the IsoFLOP optimum sits at or below hstu/XS); full
should show the optimal N_dense growing with C (the Chinchilla-style N* ∝ C^a, a ≈ 0.5).
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import quick_eval
from scaling_rec.config import default_config

QUICK_BUDGETS = (5e9, 1e10, 2e10)
FULL_BUDGETS = (1e10, 3.16e10, 1e11, 3.16e11, 1e12)
FULL_SIZES = (("XS", "S", "M"), ("XS", "S", "M"), ("XS", "S", "M", "L"), ("S", "M", "L"), ("S", "M", "L", "XL"))


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    c = default_config()
    c.study = "hstu_isoflop"
    c.data.name = "amazon-beauty"
    c.data.max_len = 50
    c.model.dropout = 0.2
    c.train.flops_budget = QUICK_BUDGETS[0]  # each sweep point sets its own budget
    if preset == "quick":
        return quick_eval(c)
    if preset == "full":
        c.train.eval_every = 350
        c.train.log_every = 175
        return c
    raise ValueError(f"unknown preset {preset!r}; use quick or full")


def get_sweep(preset: str = "quick") -> ml_collections.ConfigDict:
    if preset == "quick":
        return ml_collections.ConfigDict({"budgets": list(QUICK_BUDGETS), "sizes": ["hstu/XS", "hstu/S", "hstu/M"]})
    if preset == "full":
        return ml_collections.ConfigDict({"budgets": list(FULL_BUDGETS), "families": ["hstu", "sasrec"],
                                          "sizes_per_budget": [list(s) for s in FULL_SIZES]})
    raise ValueError(f"unknown preset {preset!r}; use quick or full")


def get_analysis(preset: str = "quick") -> dict[str, str]:
    """launch.analyze flags: fit the validation cross-entropy (full softmax over all items, smooth in
    N and D) rather than the default; fewer bootstrap resamples for quick."""
    return {"metric": "eval/valid/xent", "n_boot": "50" if preset == "quick" else "200"}
