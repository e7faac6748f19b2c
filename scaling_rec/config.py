"""The config schema and its validation: every key, its type, its allowed values.

`default_config()` is the schema: an experiment's `get_config(preset)` starts from it and changes
values, never adds keys. `validate(config, num_devices)` runs before any compute and raises
ConfigError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import ml_collections

from scaling_rec.errors import ConfigError
from scaling_rec.families import CTR_FAMILIES, SEQUENCE_FAMILIES

FAMILIES = SEQUENCE_FAMILIES
LAYOUTS = ("jagged", "padded")
IMPLS = ("auto", "xla", "pallas")
DATASETS = ("amazon-beauty", "amazon-toys", "events", "ml-100k", "ml-1m", "ml-20m", "ml-latest-small", "synthetic",
            "synthetic-long", "synthetic-long-personal", "known-answer")
LOSSES = ("sampled_softmax", "full_softmax")
LR_DECAYS = ("constant", "cosine")
# "xent" (the calibrated validation cross-entropy, scaling_rec.calibration) is lower-is-better.
SELECT_METRICS = ("ndcg@10", "hr@10", "mrr", "ndcg@200", "hr@50", "hr@200", "xent")

# Keys added after results were first stored, with the default that reproduces the older behaviour:
# run_id() leaves them out at that value. One list for both schemas run_id serves (this one and
# scaling_rec.tiger_config's: train.steps_per_call).
ADDED_KEYS = {"train.loss": "sampled_softmax", "data.long_gap": 50, "data.long_p_signal": 0.02,
              "train.steps_per_call": 1, "data.path": "", "data.kcore": 0, "data.train_user_fraction": 1.0,
              "data.columns": {"user": "user", "item": "item", "timestamp": "timestamp", "rating": "", "action": "",
                               "weight": ""},
              "train.lr_decay": "constant", "train.final_lr_fraction": 0.1}
# Keys of ADDED_KEYS that a family's schema had from its start: there they always count. The CTR schema
# (scaling_rec.ctr_config) had data.path before the sequence schema added it; leaving it out changed
# every CTR run id (caught by tests/golden).
_ORIGINAL_KEYS = {family: ("data.path",) for family in CTR_FAMILIES}

# Constraints beyond the type: key -> ("choices", values) | ("min", lower bound) | ("ks", None).
_CHOICES = {
    "data.name": DATASETS,
    "data.layout": LAYOUTS,
    "model.family": FAMILIES,
    "model.attention_impl": IMPLS,
    "eval.select_metric": SELECT_METRICS,
    "train.loss": LOSSES,
    "train.lr_decay": LR_DECAYS,
}
_POSITIVE = (
    "data.max_len", "model.embed_dim", "model.num_blocks", "model.num_heads", "model.qk_dim", "model.v_dim",
    "model.ffn_dim", "model.num_time_buckets", "model.time_bucket_divisor", "train.batch_size",
    "train.learning_rate", "train.num_negatives", "train.temperature", "train.log_every", "eval.batch_size",
    "mesh.data", "mesh.fsdp", "mesh.tensor", "data.synthetic_users", "data.synthetic_items",
)
_NON_NEGATIVE = (
    "data.min_rating", "data.kcore", "data.tokens_per_batch", "data.long_gap", "train.num_epochs", "train.num_steps",
    "train.flops_budget", "train.weight_decay", "train.warmup_steps", "train.eval_every", "train.checkpoint_every",
    "eval.patience", "eval.max_users", "seed",
)
_FRACTIONS = ("model.dropout", "train.b1", "train.b2", "data.long_p_signal", "train.final_lr_fraction")


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
        # Data scaling (experiments/hstu/data_scaling.py): train on this fraction of the users' training
        # sequences, a nested seeded subset (scaling_rec.data.pipeline.nested_subset); validation and
        # test keep every user.
        train_user_fraction=1.0,
    )
    c.model = dict(
        family="hstu", embed_dim=50, num_blocks=2, num_heads=1, qk_dim=50, v_dim=50, ffn_dim=50, dropout=0.2,
        time_bias=True, num_time_buckets=128, time_bucket_divisor=0.301, l2_norm=True, attention_impl="auto",
    )
    c.train = dict(
        batch_size=128, num_epochs=0.0, num_steps=0, flops_budget=0.0, learning_rate=1e-3, b1=0.9, b2=0.98,
        weight_decay=0.0, warmup_steps=0, loss="sampled_softmax", num_negatives=128, temperature=0.05, log_every=50,
        eval_every=0,
        checkpoint_every=0,
        # After warm-up: 'constant', or 'cosine' decay to final_lr_fraction × learning_rate at the run's
        # last step (Hoffmann et al. 2022 match the cosine length to each run; 10× decay as theirs).
        lr_decay="constant", final_lr_fraction=0.1,
    )
    c.eval = dict(
        ks=(10, 50, 200), exclude_history=False, select_metric="ndcg@10", batch_size=256, patience=0,
        max_users=0,
    )
    c.mesh = dict(data=1, fsdp=1, tensor=1)
    c.logging = dict(wandb=True, wandb_project="scaling_rec", progress=True)
    return c


def _leaves(c: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in c.items():
        key = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def _type_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return isinstance(value, type(default))


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Checks keys, types, ranges and the mesh/batch arithmetic; raises ConfigError on the first problem.

    Args:
      config: a resolved config (defaults + preset + overrides).
      num_devices: when given, the mesh must cover exactly this many devices and the batch must
        divide over its data-parallel part.
    """
    schema = dict(_leaves(default_config()))
    given = dict(_leaves(config))
    for key in given:
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}.{hint} Known keys are listed in scaling_rec/config.py.")
    for key, default in schema.items():
        if key not in given:
            raise ConfigError(f"config key {key!r} is missing; start from scaling_rec.config.default_config().")
        value = given[key]
        if not _type_ok(value, default):
            raise ConfigError(
                f"config key {key!r} = {value!r} has type {type(value).__name__}; expected {type(default).__name__}."
            )
    for key, allowed in _CHOICES.items():
        if given[key] not in allowed:
            raise ConfigError(f"config key {key!r} = {given[key]!r} is not one of {list(allowed)}.")
    for key in _POSITIVE:
        if not given[key] > 0 and not (key.startswith("mesh.") and given[key] == -1):
            raise ConfigError(f"config key {key!r} = {given[key]!r} must be > 0.")
    for key in _NON_NEGATIVE:
        if given[key] < 0:
            raise ConfigError(f"config key {key!r} = {given[key]!r} must be >= 0.")
    for key in _FRACTIONS:
        if not 0.0 <= given[key] < 1.0:
            raise ConfigError(f"config key {key!r} = {given[key]!r} must be in [0, 1).")
    if not 0.0 < given.get("data.train_user_fraction", 1.0) <= 1.0:
        raise ConfigError(f"config key 'data.train_user_fraction' = {given['data.train_user_fraction']!r} "
                          "must be in (0, 1].")
    ks = given["eval.ks"]
    if not ks or any(not isinstance(k, int) or k <= 0 for k in ks):
        raise ConfigError(f"config key 'eval.ks' = {ks!r} must be a non-empty list of positive ints.")
    lengths = [given["train.num_epochs"] > 0, given["train.num_steps"] > 0, given["train.flops_budget"] > 0]
    if sum(lengths) != 1:
        raise ConfigError(
            "set exactly one of 'train.num_epochs', 'train.num_steps', 'train.flops_budget' (> 0); got "
            f"{given['train.num_epochs']}, {given['train.num_steps']}, {given['train.flops_budget']}."
        )
    if given["model.family"] == "sasrec" and given["model.embed_dim"] % given["model.num_heads"]:
        raise ConfigError(
            f"'model.embed_dim' = {given['model.embed_dim']} must be divisible by 'model.num_heads' = "
            f"{given['model.num_heads']} for SASRec."
        )
    if given["model.family"] == "hstu" and given["data.layout"] == "padded" and given["model.attention_impl"] != "auto":
        raise ConfigError(
            f"'model.attention_impl' = {given['model.attention_impl']!r} has no effect with 'data.layout' = 'padded': "
            "the padded layout always runs dense XLA attention (scaling_rec/models/hstu.py, padded_hstu_attention). "
            "Set model.attention_impl='auto', or data.layout='jagged' to choose the kernel."
        )
    if num_devices is not None:
        check_mesh(config, num_devices)


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) with a single -1 resolved to the remaining devices."""
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sizes.count(-1) > 1:
        raise ConfigError(f"at most one of mesh.data/fsdp/tensor may be -1; got {sizes}.")
    known = 1
    for s in sizes:
        if s != -1:
            known *= s
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(f"mesh {sizes}: {num_devices} devices are not divisible by {known}.")
        sizes[sizes.index(-1)] = num_devices // known
    return sizes[0], sizes[1], sizes[2]


def check_mesh(config: ml_collections.ConfigDict, num_devices: int) -> None:
    data, fsdp, tensor = mesh_shape(config, num_devices)
    if data * fsdp * tensor != num_devices:
        raise ConfigError(
            f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = {data * fsdp * tensor} devices, but "
            f"{num_devices} are available; set mesh.* so that the product is {num_devices} (one may be -1)."
        )
    if config.train.batch_size % (data * fsdp):
        raise ConfigError(
            f"'train.batch_size' = {config.train.batch_size} is not divisible by the data-parallel size "
            f"mesh.data x mesh.fsdp = {data * fsdp}."
        )


def run_id(config: ml_collections.ConfigDict) -> str:
    """Stable short id of a resolved config: the first 12 hex digits of the SHA-256 of its sorted JSON.

    Keys that cannot change a run's numbers (logging, data_dir) are left out, so that the same run
    launched with or without W&B is the same run. What data_dir stood for, the data, enters as its content
    identity (scaling_rec.provenance.data_identity: a copy of the same files keeps the id, other files get a
    new one), left out for the canonical copies so that older ids stay valid. Keys added to the
    schema later (ADDED_KEYS) count only when they differ from their default, so that adding a key
    keeps every finished run's id (and result) valid.

    Raises:
      DataNotFoundError: an explicit data.data_dir that does not exist or lacks the dataset.
    """
    from scaling_rec.provenance import data_files, data_identity

    d = config.to_dict()
    d.pop("logging", None)
    d.get("data", {}).pop("data_dir", None)
    original = _ORIGINAL_KEYS.get(d.get("model", {}).get("family"), ())
    for key, default in ADDED_KEYS.items():
        section, name = key.split(".")
        if key not in original and d.get(section, {}).get(name, default) == default:
            d.get(section, {}).pop(name, None)
    identity = data_identity(data_files(config))
    if identity is not None:
        d["data_identity"] = identity
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
