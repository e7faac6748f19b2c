"""The CTR config schema (Wukong, DLRM, DCNv2): its defaults and constraints, validated by scaling_rec.schema.

`default_config()` is the schema: experiments start from it and change values, never add keys.
`validate(config, num_devices)` raises ConfigError naming the key, the value and what is allowed.
Run identity is `scaling_rec.schema.run_id` (hash of the resolved config minus logging/data_dir).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from scaling_rec.families import CTR_FAMILIES
from scaling_rec.schema import Schema, exactly_one_length, run_id

__all__ = ["SCHEMA", "default_config", "run_id", "validate"]

FAMILIES = CTR_FAMILIES
DATASETS = ("frappe", "criteo", "synthetic")
OPTIMIZERS = ("adamw", "adagrad")
NORMS = ("batch", "layer", "none")
INTERACTIONS = ("dot", "cat")


def default_config() -> ml_collections.ConfigDict:
    """Every key the CTR trainer reads; defaults follow the BARS Frappe_x1 protocol (FuxiCTR)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.study = "default"
    c.data = dict(
        name="frappe", data_dir="", path="", cache_dir="", split=(0.7, 0.2, 0.1), split_seed=2024, min_count=1,
        hash_buckets=0, numeric="log", synthetic_examples=4000, synthetic_cardinalities=(50, 40, 30, 20, 10, 8),
    )
    c.model = dict(
        family="wukong", embed_dim=10, norm="batch", dropout=0.2,
        # Wukong (Zhang et al. 2024 §3): l layers, n_F FMB and n_L LCB embeddings, rank k, FMB MLP.
        num_layers=2, num_fmb=10, num_lcb=10, fm_rank=8, fmb_width=200, fmb_depth=1,
        # Top MLP of all three families: mlp_depth hidden layers of mlp_width, then the logit.
        mlp_width=400, mlp_depth=3,
        # DLRM bottom MLP for dense features (Naumov et al. 2019 §2), interaction op.
        bottom_width=64, bottom_depth=2, interaction="dot",
        # DCNv2 cross layers (Wang et al. 2021 §3, parallel structure), rank 0 = full-rank W.
        cross_layers=4, cross_rank=0,
        # RankMixer (Zhu et al. 2025 §3): T tokens of width D (a multiple of T), per-token FFN width k·D;
        # num_layers and the top MLP (the output tower) are shared with the keys above.
        num_tokens=10, token_dim=40, ffn_mult=4,
    )
    c.train = dict(
        batch_size=4096, num_epochs=100.0, num_steps=0, flops_budget=0.0, optimizer="adamw", learning_rate=1e-3,
        b1=0.9, b2=0.999, weight_decay=0.0, embedding_l2=0.0, grad_clip=10.0, lr_decay_factor=0.1,
        min_learning_rate=1e-6, log_every=50, eval_every=0,
    )
    c.eval = dict(select_metric="auc", patience=2, batch_size=8192)
    c.mesh = dict(data=1, fsdp=1, tensor=1)
    c.logging = dict(wandb=False, wandb_project="scaling_rec", progress=True)
    return c


def _split(given: Mapping[str, Any]) -> str | None:
    split = tuple(given["data.split"])
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        return f"'data.split' = {split} must be three non-negative fractions summing to 1."
    return None


SCHEMA = Schema(
    label="CTR config", module="scaling_rec.ctr_config", defaults=default_config,
    choices={"data.name": DATASETS, "data.numeric": ("log", "bucket"), "model.family": FAMILIES, "model.norm": NORMS,
             "model.interaction": INTERACTIONS, "train.optimizer": OPTIMIZERS,
             "eval.select_metric": ("auc", "logloss")},
    positive=("model.embed_dim", "model.num_layers", "model.num_fmb", "model.num_lcb", "model.fm_rank",
              "model.fmb_width", "model.mlp_width", "model.bottom_width", "model.cross_layers", "model.num_tokens",
              "model.token_dim", "model.ffn_mult", "train.batch_size", "train.learning_rate", "train.log_every",
              "eval.batch_size", "data.synthetic_examples", "data.min_count"),
    non_negative=("model.fmb_depth", "model.mlp_depth", "model.bottom_depth", "data.hash_buckets", "train.num_epochs",
                  "train.num_steps", "train.flops_budget", "train.weight_decay", "train.embedding_l2",
                  "train.grad_clip", "train.min_learning_rate", "train.eval_every", "eval.patience", "seed",
                  "data.split_seed", "model.cross_rank"),  # cross_rank 0 = full rank
    fractions=("model.dropout", "train.b1", "train.b2"),
    # train.lr_decay_factor = 1 disables reduce-on-plateau.
    unit_fractions=("train.lr_decay_factor",),
    rules=(_split, exactly_one_length),
)
validate = SCHEMA.validate
