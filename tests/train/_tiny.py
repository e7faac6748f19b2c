"""A tiny synthetic run shared by the train tests and their child processes."""

from __future__ import annotations

import ml_collections

from scaling_rec.config import default_config


def tiny_config(**train: float) -> ml_collections.ConfigDict:
    c = default_config()
    c.study = "tiny"
    c.data.name = "synthetic"
    c.data.synthetic_users, c.data.synthetic_items, c.data.max_len = 300, 60, 12
    c.model.embed_dim = c.model.qk_dim = c.model.v_dim = c.model.ffn_dim = 8
    c.train.batch_size = 32
    c.train.num_negatives = 8
    c.train.num_steps = 24
    c.train.log_every = 4
    c.train.eval_every = 8
    c.train.checkpoint_every = 4
    c.eval.batch_size = 64
    c.logging.wandb = False
    c.logging.progress = False
    for k, v in train.items():
        c.train[k] = v
    return c
