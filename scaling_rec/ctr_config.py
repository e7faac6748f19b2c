"""The CTR config schema (every family of scaling_rec/models/ctr/): its defaults and constraints, validated by
scaling_rec.schema.

`default_config()` is the schema: experiments start from it and change values, never add keys.
`validate(config, num_devices)` raises ConfigError naming the key, the value and what is allowed.
Run identity is `scaling_rec.schema.run_id` (hash of the resolved config minus logging/data_dir).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from scaling_rec.families import CTR_FAMILIES
from scaling_rec.models import ctr
from scaling_rec.schema import Schema, exactly_one_length, run_id

__all__ = ["SCHEMA", "default_config", "run_id", "validate"]

FAMILIES = CTR_FAMILIES
DATASETS = ("frappe", "criteo", "table", "synthetic")
OPTIMIZERS = ("adamw", "adagrad")
NORMS = ("batch", "layer", "none")


def default_config() -> ml_collections.ConfigDict:
    """Every key the CTR trainer reads; defaults follow the BARS Frappe_x1 protocol (FuxiCTR)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.study = "default"
    c.data = dict(
        name="frappe", data_dir="", path="", cache_dir="", split=(0.7, 0.2, 0.1), split_seed=2024, min_count=1,
        hash_buckets=0, numeric="log", synthetic_examples=4000, synthetic_cardinalities=(50, 40, 30, 20, 10, 8),
        # data.name='table' (scaling_rec.data.ctr_readers.read_table): the label and comma-separated column names.
        fields=dict(label="label", categorical="", numeric=""),
    )
    # The keys every family reads (scaling_rec.models.ctr.COMMON_KEYS), then each family's own keys, declared
    # in its module of scaling_rec/models/ctr/ (Wukong's layers, DLRM's bottom MLP, DCNv2's cross layers, ...).
    c.model = dict(family="wukong", embed_dim=10, norm="batch", dropout=0.2, mlp_width=400, mlp_depth=3,
                   matmul_dtype="float32", **ctr.own_keys())
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


# Data options a dataset's reader does not take: set, they would change the run id and nothing else.
_IGNORED_DATA_KEYS = {"frappe": ("hash_buckets",), "synthetic": ("hash_buckets", "min_count")}


def _ignored_data_keys(given: Mapping[str, Any]) -> str | None:
    defaults = default_config().data
    name = given["data.name"]
    bad = {f"data.{k}": given[f"data.{k}"] for k in _IGNORED_DATA_KEYS.get(name, ())
           if given[f"data.{k}"] != defaults[k]}
    if bad:
        shown = ", ".join(f"'{k}' = {v!r}" for k, v in bad.items())
        return f"{shown}: data.name={name!r} does not read it, so it would change the run id and nothing else."
    return None


def _family_keys(attribute: str) -> tuple:
    """The 'model.<key>' names of one constraint (positive, non_negative) over every CTR family."""
    return tuple(dict.fromkeys(f"model.{k}" for name in FAMILIES for k in getattr(ctr.get(name), attribute)))


SCHEMA = Schema(
    label="CTR config", module="scaling_rec.ctr_config", defaults=default_config,
    choices={"data.name": DATASETS, "data.numeric": ("log", "bucket"), "model.family": FAMILIES, "model.norm": NORMS,
             "model.matmul_dtype": ctr.MATMUL_DTYPES,
             "train.optimizer": OPTIMIZERS, "eval.select_metric": ("auc", "logloss"),
             **{f"model.{k}": v for name in FAMILIES for k, v in ctr.get(name).choices.items()}},
    positive=("model.embed_dim", "model.mlp_width", "train.batch_size", "train.learning_rate", "train.log_every",
              "eval.batch_size", "data.synthetic_examples", "data.min_count", *_family_keys("positive")),
    non_negative=("model.mlp_depth", "data.hash_buckets", "train.num_epochs", "train.num_steps", "train.flops_budget",
                  "train.weight_decay", "train.embedding_l2", "train.grad_clip", "train.min_learning_rate",
                  "train.eval_every", "eval.patience", "seed", "data.split_seed", *_family_keys("non_negative")),
    fractions=("model.dropout", "train.b1", "train.b2"),
    # train.lr_decay_factor = 1 disables reduce-on-plateau.
    unit_fractions=("train.lr_decay_factor",),
    rules=(_split, exactly_one_length, _ignored_data_keys),
)
validate = SCHEMA.validate
