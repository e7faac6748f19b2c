r"""Data scaling on real data (issue 15 item 4): L(U) at a fixed model size, U = training users.

Each run trains on a nested subset of the users' training sequences (`data.train_user_fraction`:
a prefix of one fixed seeded permutation, so the subset at 1/8 contains the one at 1/16; validation
and test keep every user, so every run is scored on the same targets). Two arms per dataset:

  fixed_epochs     fractions 1/16, 1/8, 1/4, 1/2, 1, each for EPOCHS epochs over its own subset:
                   L(U) at equal repetition, whose exponent is the data-scaling exponent.
  equal_examples   fractions 1/16 and 1/4 (Beauty, Toys: 1/4 only) trained on as many examples as
                   the full set's EPOCHS epochs, i.e. EPOCHS/f epochs: the same compute on less unique
                   data, the repeated-data effect of Muennighoff et al. 2023 ("Scaling Data-Constrained
                   Language Models"),
                   whose effective data is D' = U + U·R*·(1 − exp(−R/R*)), R = epochs − 1, R* ≈ 15.4.
                   (The fraction-1 run of this arm is the fixed_epochs run.)

Fitted quantity: the calibrated held-out next-item cross-entropy of the test split, eval/test/xent
(nats per event, one temperature per run fitted on validation; scaling_rec.calibration), the study's
default; NDCG@10 is reported beside it.

Commands (one dataset after another; study directory <workdir>/data_scaling_<dataset>):
  SCALING_REC_DATA=../shared/data nice -n 5 python -m launch.sweep \
      --config=experiments/hstu/data_scaling.py:ml100k --workdir=runs/ --executor=inline --analyze=false
  python -m benchmarks.data_scaling --config=experiments/hstu/data_scaling.py:ml100k \
      --study=runs/data_scaling_ml100k --out=benchmarks/results/data_scaling_ml100k
(and :beauty, :toys). Presets:
  ml100k   ML-100K (943 users, 8 steps per full epoch), hstu/S, max_len 50, 20 epochs: 7 runs.
  beauty   Amazon Beauty (22,363 users), hstu/S, full softmax, batch 256 (88 steps per full epoch),
           2 epochs, evaluation on 5,000 users (the results below: the first 5,000; a seeded
           sample since eval.users, 2026-12-07): 6 runs.
  toys     Amazon Toys (19,412 users, batch 256: 76 steps per full epoch), as beauty: 6 runs.
  tiny     synthetic data, 2 fractions × 2 epochs (the tests' smoke study).
Runtime and result (2-core CPU at load average 10-13; reports in benchmarks/results/data_scaling_<dataset>/,
written by the second command, with the command, commit and machine in provenance.json):
  ml100k   sweep 17.9 min. Test xent (chance ln 1682 = 7.43) 7.22 → 6.17 from U = 59 to 943 users, NDCG@10
           .016 → .045. Five fractions do not pin the saturating law (E on its box's lower edge, α's CI
           29× wide: not identified); the two-parameter law gives α = 0.063 [0.043, 0.081]. Repeated
           data: U = 59 for 320 epochs scores 7.153 where Muennighoff's R* = 15.4 predicts 7.156 (fresh
           data 6.17, repeats worthless 7.30); U = 236 for 80 epochs 6.709 vs 6.582 (worthless 6.708);
           R* fitted to the two runs 10.5 (no CI).
  beauty   sweep 17.4 min. Test xent 9.400 → 9.272 against chance ln 12101 = 9.401 (NDCG@10 .0003 →
           .0083): two epochs leave the model within 1.4% of chance, and the saturating law is flagged
           flat (F-test p = 0.23); the two-parameter α = 0.004 [0.001, 0.007] describes undertraining,
           not a data-scaling law. U = 5,591 for 8 epochs: 9.352 (Muennighoff 9.308, worthless 9.354).
  toys     sweep 9.4 min. Test xent 9.386 → 9.343 (chance 9.386), flat as Beauty; the smallest fraction's
           run is excluded under the current rules (its calibration temperature is the grid's edge: an
           upper bound), and on the other four both laws are flagged flat (p = 0.49 and 0.13), α = 0.0015
           [0, 0.0037]: not identified; U = 4,853 for 8 epochs 9.335, better than fresh data's 9.347 (R*
           on its upper bound: not identified).
  Refitted 2026-12-07 from the committed tables (`--runs_csv=benchmarks/results/data_scaling_<dataset>/runs.csv`
  in place of --study; the stores are gone): ML-100K and Beauty unchanged; Toys as above (its first report
  kept the edge-temperature run and called the two-parameter α identified, [0.0006, 0.0026]).
  A data-scaling law on Beauty and Toys needs the reproductions' length (24+ epochs of 128, about 12x
  these runs' examples at full data): a GPU preset, not run here.
Sizing: the shared 2-core CPU of this project (load average 10-13 while it ran: five sessions at once)
allows about 15 minutes per dataset; ML-100K ran at 0.8-1.2 steps/s. So Beauty and Toys train for 2
epochs at batch 256 (the reproductions were still improving at 24 epochs of 128): their exponents
describe short training, not convergence.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import quick_eval, reference

FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
# preset -> (dataset, epochs at every fraction of the fixed_epochs arm, eval users (0 = all), batch size,
#            fractions of the equal_examples arm)
PRESETS = {
    "ml100k": ("ml-100k", 20.0, 0, 128, (1 / 16, 1 / 4)),
    "beauty": ("amazon-beauty", 2.0, 5000, 256, (1 / 4,)),
    "toys": ("amazon-toys", 2.0, 5000, 256, (1 / 4,)),
    "tiny": ("synthetic", 2.0, 0, 128, ()),
}


def get_config(preset: str = "ml100k") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(PRESETS)}")
    dataset, epochs, eval_users, batch_size, _ = PRESETS[preset]
    c = reference(dataset, f"data_scaling_{preset}", "hstu", max_len=50, num_epochs=epochs)
    quick_eval(c, max_users=eval_users)
    c.train.batch_size = batch_size
    if preset in ("beauty", "toys"):
        c.train.loss = "full_softmax"  # reaches a usable model in few epochs (README, reproductions)
    if preset == "tiny":
        c.data.synthetic_users, c.data.synthetic_items = 400, 100
    return c


def get_sweep(preset: str = "ml100k") -> list[dict]:
    epochs, equal_fractions = PRESETS[preset][1], PRESETS[preset][4]
    if preset == "tiny":
        return [{"size": "hstu/XS", "data.train_user_fraction": f, "group_label": "fixed_epochs"} for f in (0.5, 1.0)]
    points = [{"size": "hstu/S", "data.train_user_fraction": f, "train.num_epochs": epochs,
               "group_label": "fixed_epochs"} for f in FRACTIONS]
    points += [{"size": "hstu/S", "data.train_user_fraction": f, "train.num_epochs": epochs / f,
                "group_label": "equal_examples"} for f in equal_fractions]
    return points


def get_analysis(preset: str = "ml100k") -> dict[str, str]:
    """launch.analyze flags (the generic report; benchmarks.data_scaling writes the data-scaling one)."""
    del preset
    return {"metric": "eval/test/xent", "transform": "none", "frontier": "pareto", "n_boot": "100"}
