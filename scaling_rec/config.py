"""The sequential retrievers' (HSTU, SASRec) config schema: every key, its type, its allowed values.

`default_config()` is the schema: an experiment's `get_config(preset)` starts from it and changes
values, never adds keys. `validate(config, num_devices)` (scaling_rec.schema.Schema.validate, the
validator every family shares) runs before any compute and raises ConfigError naming the key, the value
and what is allowed. `run_id`, `check_mesh`, `mesh_shape` and `ADDED_KEYS` are scaling_rec.schema's, the
same for every family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from scaling_rec.families import SEQUENCE_FAMILIES
from scaling_rec.models.ctr import MATMUL_DTYPES
from scaling_rec.schema import ADDED_KEYS, Schema, check_mesh, exactly_one_length, mesh_shape, run_id

__all__ = ["ADDED_KEYS", "SCHEMA", "check_mesh", "default_config", "mesh_shape", "run_id", "validate"]

FAMILIES = SEQUENCE_FAMILIES
LAYOUTS = ("jagged", "padded")
IMPLS = ("auto", "xla", "pallas")
DATASETS = ("amazon-beauty", "amazon-toys", "events", "ml-100k", "ml-1m", "ml-20m", "ml-latest-small", "synthetic",
            "synthetic-long", "synthetic-long-personal", "known-answer")
LOSSES = ("sampled_softmax", "full_softmax")
LR_DECAYS = ("constant", "cosine")
# "xent" (the calibrated validation cross-entropy, scaling_rec.calibration) is lower-is-better.
# data.timestamp_unit: the unit of an event log's timestamps, converted to seconds when read (the time bias
# buckets seconds); unit i is 1000**i per second.
TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
SELECT_METRICS = ("ndcg@10", "hr@10", "mrr", "ndcg@200", "hr@50", "hr@200", "xent")


EVAL_USER_PICKS = ("sample", "first")
"""eval.users: which users an eval.max_users subset takes (scaling_rec.data.splits.eval_user_indices)."""


def default_config() -> ml_collections.ConfigDict:
    """Every key the library reads, with defaults from the HSTU reference's ML-1M settings."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.study = "default"
    c.data = dict(
        name="amazon-beauty", data_dir="", max_len=50, min_rating=0.0, dedup=False, layout="jagged",
        tokens_per_batch=0, synthetic_users=2000, synthetic_items=500,
        # 'synthetic-long*' only (scaling_rec/data/long_range.py): profile events lie beyond the last
        # long_gap events, each event there being a profile item with probability long_p_signal.
        long_gap=50, long_p_signal=0.02,
        # 'events' only (scaling_rec/data/events.py): a log (.csv/.tsv/.parquet) or a prepared directory
        # (launch/prepare.py), its {role: column} mapping ('' = absent), and the k-core (0 = off).
        path="", columns=dict(user="user", item="item", timestamp="timestamp", rating="", action="", weight=""),
        kcore=0,
        # The model's item ids 1..num_items; 0 = the data's items. A larger value reserves ids the data
        # never uses, so that logs covering different parts of one catalogue train the same model
        # (benchmarks/events_scale.py); a smaller one is an error.
        num_items=0,
        # 'events' only: the unit of the log's timestamps (TIMESTAMP_UNITS), converted to seconds when read.
        timestamp_unit="s",
        # Data scaling (experiments/hstu/data_scaling.py): train on this fraction of the users' training
        # sequences, a nested seeded subset (scaling_rec.data.pipeline.nested_subset); validation and
        # test keep every user.
        train_user_fraction=1.0,
    )
    c.model = dict(
        family="hstu", embed_dim=50, num_blocks=2, num_heads=1, qk_dim=50, v_dim=50, ffn_dim=50, dropout=0.2,
        time_bias=True, num_time_buckets=128, time_bucket_divisor=0.301, l2_norm=True, attention_impl="auto",
        # HSTU only: 'bfloat16' runs the blocks' products, the attention's q, k, v and the loss's dense scoring
        # in bfloat16 with float32 accumulation (scaling_rec/models/hstu.py; issue 17).
        matmul_dtype="float32",
    )
    c.train = dict(
        batch_size=128, num_epochs=0.0, num_steps=0, flops_budget=0.0, learning_rate=1e-3, b1=0.9, b2=0.98,
        weight_decay=0.0, warmup_steps=0, loss="sampled_softmax", num_negatives=128, temperature=0.05, log_every=50,
        eval_every=0,
        checkpoint_every=0,
        # After warm-up: 'constant', or 'cosine' decay to final_lr_fraction × learning_rate at the run's
        # last step (Hoffmann et al. 2022 match the cosine length to each run; 10× decay as theirs;
        # scaling_rec.train.step.learning_rate_schedule).
        lr_decay="constant", final_lr_fraction=0.1,
        # Sampled softmax: consecutive target tokens per draw of num_negatives negatives (1: every token its
        # own draw, as the HSTU reference; s > 1: shared, s times fewer gathered rows; train.losses).
        negative_sharing=1,
    )
    c.eval = dict(
        ks=(10, 50, 200), exclude_history=False, select_metric="ndcg@10", batch_size=256, patience=0,
        # max_users > 0: evaluate that many users, a fixed seeded sample ('sample') or the file's first ones
        # ('first': a biased subset of real data; scaling_rec.data.splits.eval_user_indices).
        max_users=0, users="sample",
    )
    c.mesh = dict(data=1, fsdp=1, tensor=1)
    c.logging = dict(wandb=True, wandb_project="scaling_rec", progress=True)
    return c


def _heads_divide_width(given: Mapping[str, Any]) -> str | None:
    if given["model.family"] == "sasrec" and given["model.embed_dim"] % given["model.num_heads"]:
        return (f"'model.embed_dim' = {given['model.embed_dim']} must be divisible by 'model.num_heads' = "
                f"{given['model.num_heads']} for SASRec.")
    return None


def _bf16_is_hstu(given: Mapping[str, Any]) -> str | None:
    if given["model.family"] != "hstu" and given["model.matmul_dtype"] != "float32":
        return (f"'model.matmul_dtype' = {given['model.matmul_dtype']!r} is implemented for HSTU only; "
                f"{given['model.family']!r} trains in float32 (set model.matmul_dtype='float32').")
    return None


def _padded_ignores_kernel(given: Mapping[str, Any]) -> str | None:
    if given["model.family"] == "hstu" and given["data.layout"] == "padded" and given["model.attention_impl"] != "auto":
        return (f"'model.attention_impl' = {given['model.attention_impl']!r} has no effect with 'data.layout' = "
                "'padded': the padded layout always runs dense XLA attention (scaling_rec/models/hstu.py, "
                "padded_hstu_attention). Set model.attention_impl='auto', or data.layout='jagged' to choose the "
                "kernel.")
    return None


SCHEMA = Schema(
    label="config", module="scaling_rec.config", defaults=default_config,
    choices={"data.name": DATASETS, "data.layout": LAYOUTS, "model.family": FAMILIES, "model.attention_impl": IMPLS,
             "eval.select_metric": SELECT_METRICS, "train.loss": LOSSES, "train.lr_decay": LR_DECAYS,
             "data.timestamp_unit": TIMESTAMP_UNITS, "model.matmul_dtype": MATMUL_DTYPES,
             "eval.users": EVAL_USER_PICKS},
    positive=("data.max_len", "model.embed_dim", "model.num_blocks", "model.num_heads", "model.qk_dim", "model.v_dim",
              "model.ffn_dim", "model.num_time_buckets", "model.time_bucket_divisor", "train.batch_size",
              "train.learning_rate", "train.num_negatives", "train.negative_sharing",
              "train.temperature", "train.log_every", "eval.batch_size",
              "data.synthetic_users", "data.synthetic_items"),
    non_negative=("data.min_rating", "data.kcore", "data.tokens_per_batch", "data.long_gap", "train.num_epochs",
                  "train.num_steps", "train.flops_budget", "train.weight_decay", "train.warmup_steps",
                  "train.eval_every", "train.checkpoint_every", "eval.patience", "eval.max_users", "seed",
                  "data.num_items"),
    fractions=("model.dropout", "train.b1", "train.b2", "data.long_p_signal", "train.final_lr_fraction"),
    unit_fractions=("data.train_user_fraction",), positive_lists=("eval.ks",),
    rules=(exactly_one_length, _heads_divide_width, _padded_ignores_kernel, _bf16_is_hstu),
)
validate = SCHEMA.validate
