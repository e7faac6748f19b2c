"""Shared presets of the HSTU studies: the reference recipe and its sizes, one place.

Reference recipe (facebookresearch/generative-recommenders, configs/ml-1m/*.gin; Zhai et al. 2024
§4.1.1): embedding 50, AdamW lr 1e-3 betas (0.9, 0.98) no weight decay, batch 128, 128 uniform
sampled negatives, temperature 0.05, L2-normalised embeddings, dropout 0.2; `hstu` = 2 blocks × 1
head × 50, `hstu_large` = 8 blocks × 2 heads × 25 (scaling_rec/sweep/sizes.py: hstu/S, hstu/M);
`sasrec` = SASRec with the same recipe (sasrec/S). Every preset only changes default_config()
values, so any of them can be overridden on the command line (--config.train.num_epochs=5).
"""

from __future__ import annotations

import ml_collections

from scaling_rec.config import default_config
from scaling_rec.sweep.sizes import apply_size

MODEL_PRESETS = {"sasrec": "sasrec/S", "hstu": "hstu/S", "hstu_large": "hstu/M"}


def reference(dataset: str, study: str, preset: str, *, max_len: int = 50, num_epochs: float = 50.0,
              eval_every_epochs: int = 2, steps_per_epoch: int = 175) -> ml_collections.ConfigDict:
    """The reference recipe on `dataset` for preset 'sasrec' | 'hstu' | 'hstu_large' | 'tiny'.

    tiny: hstu/S for 20 steps, evaluated on 1,000 users (a smoke test of the pipeline).
    eval_every_epochs × steps_per_epoch sets train.eval_every (steps_per_epoch of the dataset at
    batch 128: Beauty 175, Toys 152, ML-1M 48, ML-100K 8).
    """
    c = default_config()
    c.study = study
    c.data.name = dataset
    c.data.max_len = max_len
    c.model.dropout = 0.2
    if preset == "tiny":
        apply_size(c, "hstu/S")
        c.train.num_steps = 20
        c.train.log_every = 10
        c.eval.max_users = 1000
        c.logging.wandb = False
        return c
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {['tiny', *MODEL_PRESETS]}")
    apply_size(c, MODEL_PRESETS[preset])
    c.train.num_epochs = num_epochs
    c.train.eval_every = eval_every_epochs * steps_per_epoch
    c.train.log_every = steps_per_epoch
    c.eval.patience = 5
    return c


def quick_eval(c: ml_collections.ConfigDict, max_users: int = 5000) -> ml_collections.ConfigDict:
    """Evaluate once at the end of training, on `max_users` users (sweeps on a CPU; which: eval.users)."""
    c.train.eval_every = 10**9
    c.eval.max_users = max_users
    c.eval.patience = 0
    c.train.log_every = 100
    c.logging.wandb = False
    return c
