"""The CTR config schema (Wukong, DLRM, DCNv2) and its validation, in the style of scaling_rec.config.

`default_config()` is the schema: experiments start from it and change values, never add keys.
`validate(config, num_devices)` raises ConfigError naming the key, the value and what is allowed.
Run identity reuses `scaling_rec.config.run_id` (hash of the resolved config minus logging/data_dir).
"""

from __future__ import annotations

import difflib

import ml_collections

from scaling_rec import config as seq_config
from scaling_rec.errors import ConfigError
from scaling_rec.families import CTR_FAMILIES

FAMILIES = CTR_FAMILIES
DATASETS = ("frappe", "criteo", "synthetic")
OPTIMIZERS = ("adamw", "adagrad")
NORMS = ("batch", "layer", "none")
INTERACTIONS = ("dot", "cat")
run_id = seq_config.run_id

_CHOICES = {
    "data.name": DATASETS, "data.numeric": ("log", "bucket"), "model.family": FAMILIES, "model.norm": NORMS,
    "model.interaction": INTERACTIONS, "train.optimizer": OPTIMIZERS, "eval.select_metric": ("auc", "logloss"),
}
_POSITIVE = (
    "model.embed_dim", "model.num_layers", "model.num_fmb", "model.num_lcb", "model.fm_rank", "model.fmb_width",
    "model.mlp_width", "model.bottom_width", "model.cross_layers", "train.batch_size", "train.learning_rate",
    "train.log_every", "eval.batch_size", "data.synthetic_examples", "data.min_count",
)
_NON_NEGATIVE = (
    "model.fmb_depth", "model.mlp_depth", "model.bottom_depth", "data.hash_buckets", "train.num_epochs",
    "train.num_steps", "train.flops_budget", "train.weight_decay", "train.embedding_l2", "train.grad_clip",
    "train.min_learning_rate", "train.eval_every", "eval.patience", "seed", "data.split_seed",
)
_FRACTIONS = ("model.dropout", "train.b1", "train.b2")


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


def _leaves(c: ml_collections.ConfigDict, prefix: str = "") -> dict:
    out = {}
    for k, v in c.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Checks keys, types, ranges and the mesh/batch arithmetic; ConfigError on the first problem."""
    schema, given = _leaves(default_config()), _leaves(config)
    for key in given:
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown CTR config key {key!r}.{hint} Known keys: scaling_rec/ctr_config.py.")
    for key, default in schema.items():
        if key not in given:
            raise ConfigError(f"CTR config key {key!r} is missing; start from scaling_rec.ctr_config.default_config().")
        if not seq_config._type_ok(given[key], default):
            raise ConfigError(f"CTR config key {key!r} = {given[key]!r} has type {type(given[key]).__name__}; "
                              f"expected {type(default).__name__}.")
    for key, allowed in _CHOICES.items():
        if given[key] not in allowed:
            raise ConfigError(f"CTR config key {key!r} = {given[key]!r} is not one of {list(allowed)}.")
    for key in _POSITIVE:
        if not given[key] > 0:
            raise ConfigError(f"CTR config key {key!r} = {given[key]!r} must be > 0.")
    for key in _NON_NEGATIVE:
        if given[key] < 0:
            raise ConfigError(f"CTR config key {key!r} = {given[key]!r} must be >= 0.")
    for key in _FRACTIONS:
        if not 0.0 <= given[key] < 1.0:
            raise ConfigError(f"CTR config key {key!r} = {given[key]!r} must be in [0, 1).")
    if not 0.0 < given["train.lr_decay_factor"] <= 1.0:
        raise ConfigError(f"'train.lr_decay_factor' = {given['train.lr_decay_factor']} must be in (0, 1] "
                          "(1 disables reduce-on-plateau).")
    if given["model.cross_rank"] < 0:
        raise ConfigError(f"'model.cross_rank' = {given['model.cross_rank']} must be >= 0 (0 = full rank).")
    split = tuple(given["data.split"])
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(f"'data.split' = {split} must be three non-negative fractions summing to 1.")
    lengths = [given["train.num_epochs"] > 0, given["train.num_steps"] > 0, given["train.flops_budget"] > 0]
    if sum(lengths) != 1:
        got = (given["train.num_epochs"], given["train.num_steps"], given["train.flops_budget"])
        raise ConfigError(f"set exactly one of 'train.num_epochs', 'train.num_steps', 'train.flops_budget' (> 0); "
                          f"got {got}.")
    if num_devices is not None:
        seq_config.check_mesh(config, num_devices)
