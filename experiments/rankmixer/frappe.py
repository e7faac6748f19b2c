"""RankMixer (Zhu et al. 2025) on Frappe, BARS Frappe_x1 protocol, as experiments/wukong/frappe.py.

One run:
    SCALING_REC_DATA=../shared/data python -m launch.train --config=experiments/rankmixer/frappe.py:rankmixer \
        --workdir=runs/
Sweep (the `sweep` preset: ladder rungs r0-r2 at a fixed length); launch.sweep then runs launch.analyze
with get_analysis's flags, which alone is
    SCALING_REC_DATA=../shared/data python -m launch.sweep --config=experiments/rankmixer/frappe.py:sweep \
        --workdir=runs/ --executor=local --workers=2
    python -m launch.analyze --workdir=runs/rankmixer_sweep --out=runs/rankmixer_sweep/report \
        --metric=eval/test/logloss --transform=none --frontier=pareto --n_boot=50

Presets (embedding dim 10, batch 4096, Adam lr 1e-3, x0.1 on plateau, early stop after 2 epochs without
validation-AUC gain, as the other Frappe presets):
- rankmixer: T = 10 tokens (one per Frappe field) of width D = 40, k = 4, L = 2 blocks, mean pool, output
  MLP 400x3 (BN, dropout 0.2), embedding L2 0.2.
- sweep: rungs rankmixer/r0-r2 of scaling_rec/sweep/sizes.py at 1 and 3 epochs, constant learning rate,
  one evaluation at the end (experiments/wukong/scaling.py's protocol).
- tiny: a seconds-long smoke run on synthetic data.
"""

from __future__ import annotations

import ml_collections

from scaling_rec.ctr_config import default_config

PRESETS = ("rankmixer", "sweep", "tiny")
SWEEP_RUNGS = 3
SWEEP_EPOCHS = (1.0, 3.0)
FINAL_ONLY = 10**9  # eval_every larger than any run: one evaluation, at the last step


def get_config(preset: str = "rankmixer") -> ml_collections.ConfigDict:
    """The full config of one preset (see the module docstring)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    c = default_config()
    c.study = "rankmixer_frappe"
    c.data.name = "frappe"
    c.model.family = "rankmixer"
    c.model.embed_dim, c.model.norm, c.model.dropout = 10, "batch", 0.2
    c.model.num_tokens, c.model.token_dim, c.model.ffn_mult, c.model.num_layers = 10, 40, 4, 2
    c.model.mlp_width, c.model.mlp_depth = 400, 3
    c.train.batch_size, c.train.learning_rate, c.train.num_epochs = 4096, 1e-3, 100.0
    c.train.embedding_l2 = 0.2
    c.eval.patience = 2
    if preset == "sweep":
        c.study = "rankmixer_sweep"
        c.train.lr_decay_factor = 1.0  # constant learning rate: the run's length is the only schedule
        c.train.eval_every = FINAL_ONLY
        c.eval.patience = 0
    if preset == "tiny":
        c.data.name = "synthetic"
        c.model.num_tokens, c.model.token_dim, c.model.mlp_width = 4, 16, 32
        c.train.batch_size, c.train.num_epochs = 256, 2.0
    return c


def get_sweep(preset: str = "sweep") -> list[dict]:
    """Points (dotted config keys, scaling_rec/sweep/spec.py): rungs r0..r{SWEEP_RUNGS-1} x epochs."""
    if preset != "sweep":
        return [{}]
    return [{"size": f"rankmixer/r{r}", "train.num_epochs": e} for e in SWEEP_EPOCHS for r in range(SWEEP_RUNGS)]


def get_analysis(preset: str = "sweep") -> dict[str, str]:
    """launch.analyze flags: test logloss (nats) against training FLOPs on the Pareto frontier."""
    return {"metric": "eval/test/logloss", "transform": "none", "frontier": "pareto", "n_boot": "50"}
