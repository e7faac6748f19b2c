"""A tiny synthetic study for the sweep tests: a miniature HSTU (one shape), seconds per run.

  python -m launch.sweep --config=tests/sweep/tiny_study.py:steps --workdir=/tmp/sweep --noanalyze
"""

from __future__ import annotations

import ml_collections

from scaling_rec.config import default_config


def get_config(preset: str = "steps") -> ml_collections.ConfigDict:
    c = default_config()
    c.study = "tiny_study"
    c.data.name = "synthetic"
    c.data.synthetic_users = 120
    c.data.synthetic_items = 60
    c.data.max_len = 12
    c.model.embed_dim, c.model.qk_dim, c.model.v_dim, c.model.ffn_dim, c.model.num_blocks = 8, 8, 8, 8, 1
    c.model.time_bias = False
    c.train.batch_size = 32
    c.train.num_negatives = 8
    c.train.num_steps = 4
    c.train.log_every = 4
    c.train.eval_every = 10**6
    c.eval.ks = (10,)
    c.eval.batch_size = 64
    c.logging.wandb = False
    c.logging.progress = False
    return c


def get_sweep(preset: str = "steps") -> list[dict] | ml_collections.ConfigDict:
    """steps: 3 runs of one shape; budgets: 2 FLOP budgets; diverge: ok, diverged (lr 1e6), ok; one: 1 run."""
    if preset == "steps":
        return [{"train.num_steps": n} for n in (3, 4, 5)]
    if preset == "budgets":
        return [{"train.flops_budget": c} for c in (3e6, 6e6)]
    if preset == "diverge":
        return [{"train.num_steps": 3}, {"train.num_steps": 3, "train.learning_rate": 1e6, "model.l2_norm": False},
                {"train.num_steps": 5}]
    if preset == "one":
        return [{"train.num_steps": 2}]
    raise ValueError(f"unknown preset {preset!r}")


def get_analysis(preset: str = "steps") -> dict[str, str]:
    """launch.analyze flags for this study (no bootstrap: a tiny study has nothing to resample)."""
    return {"n_boot": "0"}
