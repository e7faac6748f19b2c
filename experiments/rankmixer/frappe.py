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
- rankmixer: T = 5 tokens (one per two Frappe fields) of width D = 40 (5 heads of 8), k = 4, L = 2 blocks,
  mean pool, output MLP 200x2 (BN, dropout 0.2), embedding L2 0.2 (Wukong's Frappe value).
- sweep: rungs rankmixer/r0-r2 of scaling_rec/sweep/sizes.py at 1 and 3 epochs, constant learning rate,
  one evaluation at the end (experiments/wukong/scaling.py's protocol).
- tiny: a seconds-long smoke run on synthetic data.

Tuning (validation AUC only, seed 0, 2026-12-06, 2 CPU cores shared with ~10 other jobs: 4-8 min per epoch):
after 1 / 2 epochs, T = 10, D = 40, output MLP 400x3: .9344 / - (stopped: 3x the FLOPs of the others);
T = 10, D = 20, 200x2: .9293 / .9400 (then .9446, .9481, .9526, .9570, .9590, plateau at lr 1e-3); the
same at lr 3e-3: .9242 / .9308; T = 5, D = 40, 200x2 (this preset): .9320 / .9457. Train and validation
logloss stay within .01 of each other (.23 at epoch 6): the model underfits at embedding L2 0.2, so
L2 0.05 and 0.01 were started (epoch 2: .9488 and .9479).
Measured (this preset, run a064fededfb1, commit ca5a152, same machine), validation / test AUC by epoch:
.9320 / .9297, .9457 / .9447, .9523 / .9533, .9569 / .9577, .9611 / .9611, .9609 (plateau: lr x0.1),
.9707 / .9706, .9741 / .9744, .9750 / .9752 at epoch 9 (valid logloss .1825), still rising when this
file was written: below the .980 target so far (DLRM .9828, DCNv2 .9832 here). One seed: no SE yet.
Sweep preset (launch.sweep; launch.analyze on the 5 runs finished by then): test logloss / AUC at 1 epoch,
r0 -> r2: .2992 / .9316, .3109 / .9304, .2953 / .9337; at 3 epochs r0 .2562 / .9485, r1 .2586 / .9530
(r2 at 3 epochs was still running). The report's ladder table is written; L(C) on the Pareto frontier
needs 4 frontier points and is not fitted from these runs.
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
    c.model.num_tokens, c.model.token_dim, c.model.ffn_mult, c.model.num_layers = 5, 40, 4, 2
    c.model.mlp_width, c.model.mlp_depth = 200, 2
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
