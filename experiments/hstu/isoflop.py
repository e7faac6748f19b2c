r"""IsoFLOP study of HSTU (and SASRec) on Amazon Beauty: which model size is best at each budget C?

Command (the real-data counterpart of the README's main job, which runs experiments/hstu/known_answer.py:quick
because this quick preset trains at chance; see below):
  SCALING_REC_DATA=../shared/data python -m launch.sweep \
      --config=experiments/hstu/isoflop.py:quick --workdir=runs/ --executor=inline
  (another dataset: --config.data.name=amazon-toys; report: runs/hstu_isoflop/report/report.md)

Presets (sizes from scaling_rec/sweep/sizes.py; every run gets train.flops_budget = C and the loop
turns C into steps with scaling_rec/flops.py, stopping at the first step with spent >= C):
  quick  4 budgets (2.5e9 … 2e10 FLOPs; 4 is the fewest L(C) = E + A·C^-α can be fitted to) × hstu/XS,
         S, M (N_dense 5k, 25k, 101k) = 12 runs, one evaluation at the end on 5,000 users (the first
         5,000 in the results below; a seeded sample since eval.users, 2026-12-07).
         Training-FLOPs per Beauty example are 0.33M / 1.12M / 3.83M, so C = 1e10 is 235 / 70 / 20 steps
         of 128 users.
  full   5 budgets 2e9 … 2e11 (two orders of magnitude, ×√10 apart) × XS, S, M (+ L from 2e10), HSTU and
         SASRec side by side = 36 runs, evaluation every 350 steps over all users, model selected on
         validation. Sized for this 2-core CPU: at 2e11 hstu/XS trains 4,700 steps (27 epochs).
  large  the same design at 1e10 … 1e12 with sizes shifting up to XL (34 runs): for a GPU.
Fitted quantity: the calibrated test cross-entropy eval/test/xent (get_analysis says why); the results
below were measured and fitted on 1 / validation NDCG@10, before the cross-entropy was calibrated.

Runtime and expected results (measured on the 2-core CPU, 2026-11-26):
  quick  2 min 10 s wall (12 runs, fit, plots) on an otherwise idle machine, sweep overhead 1.5%. Every
         run trains 5-470 steps (valid NDCG@10 .0002-.012, chance ≈ .0008): it demonstrates the pipeline
         on real data, not a law (the main job's known-answer study does that).
  full   1 h 28 min wall, 36 runs, sweep overhead 4.3%, sharing the machine with 3-4 other jobs; report,
         runs.csv and provenance in benchmarks/results/hstu_isoflop_full_cpu/ (python -m
         benchmarks.study_report --config=experiments/hstu/isoflop.py:full --study=runs/full/hstu_isoflop
         --out=benchmarks/results/hstu_isoflop_full_cpu). On the compute frontier 1/NDCG@10 follows
         E + A·C^-α with α = 0.98 [0.30, 1.11] (HSTU) and 0.97 [0.33, 1.57] (SASRec); E is not identified
         (its CI spans 0.6-25, over 40x; its estimate ≈ 25 would be an NDCG@10 ceiling ≈ .040, where the
         24-epoch reproduction runs reach test .032-.041);
         fitted without the largest budget the law predicts it within 5.3% (HSTU) and 15.5% (SASRec).
         HSTU and SASRec are indistinguishable here. The smallest size (XS, N_dense 5k) is best or
         tied at every budget: the IsoFLOP parabolas (log L vs log N) have an interior minimum at 1 of 5
         (HSTU; two more have none at all) and 0 of 5 (SASRec) budgets (report refitted from its runs.csv
         on 2026-12-07), so the exponent a of N* ∝ C^a cannot be estimated (it is
         fitted on interior minima only); these budgets are data-limited (up to 27 epochs of 22k users),
         not size-limited.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import quick_eval
from scaling_rec.config import default_config

QUICK_BUDGETS = (2.5e9, 5e9, 1e10, 2e10)
FULL_BUDGETS = (2e9, 6.32e9, 2e10, 6.32e10, 2e11)
FULL_SIZES = (("XS", "S", "M"), ("XS", "S", "M"), ("XS", "S", "M", "L"), ("XS", "S", "M", "L"), ("XS", "S", "M", "L"))
LARGE_BUDGETS = (1e10, 3.16e10, 1e11, 3.16e11, 1e12)
LARGE_SIZES = (("XS", "S", "M"), ("XS", "S", "M"), ("XS", "S", "M", "L"), ("S", "M", "L"), ("S", "M", "L", "XL"))


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    c = default_config()
    c.study = "hstu_isoflop"
    c.data.name = "amazon-beauty"
    c.data.max_len = 50
    c.model.dropout = 0.2
    c.train.flops_budget = QUICK_BUDGETS[0]  # each sweep point sets its own budget
    if preset == "quick":
        return quick_eval(c)
    if preset in ("full", "large"):
        c.train.eval_every = 350
        c.train.log_every = 175
        return c
    raise ValueError(f"unknown preset {preset!r}; use quick, full or large")


def get_sweep(preset: str = "quick") -> ml_collections.ConfigDict:
    if preset == "quick":
        return ml_collections.ConfigDict({"budgets": list(QUICK_BUDGETS), "sizes": ["hstu/XS", "hstu/S", "hstu/M"]})
    if preset in ("full", "large"):
        budgets, sizes = (FULL_BUDGETS, FULL_SIZES) if preset == "full" else (LARGE_BUDGETS, LARGE_SIZES)
        return ml_collections.ConfigDict({"budgets": list(budgets), "families": ["hstu", "sasrec"],
                                          "sizes_per_budget": [list(s) for s in sizes]})
    raise ValueError(f"unknown preset {preset!r}; use quick, full or large")


def get_analysis(preset: str = "quick") -> dict[str, str]:
    """launch.analyze flags: fit the calibrated held-out next-item cross-entropy of the test split
    (scaling_rec.calibration: nats per event over the whole catalogue, one temperature per run fitted on
    validation), the smooth loss with an irreducible floor that LLM scaling studies fit. Test, not
    validation: validation chose each run's checkpoint and temperature. The raw cross-entropy at the
    training temperature 0.05 is over-confident and rose while NDCG improved in the Beauty reproduction
    runs; the earlier target, 1 / validation NDCG@10, is still available with --metric=eval/valid/ndcg@10
    --transform=reciprocal. Fewer bootstrap resamples for quick."""
    return {"metric": "eval/test/xent", "transform": "none", "n_boot": "50" if preset == "quick" else "200"}
