"""The one config validator, run identity and mesh arithmetic shared by every family's schema.

A family's schema module (scaling_rec.config for HSTU/SASRec, scaling_rec.ctr_config, scaling_rec.tiger_config)
declares a `Schema`: its `default_config()` (every key and, through the default's type, the key's type) and its
constraints (choices, ranges, cross-key rules). `Schema.validate` then checks, in this order and stopping at the
first problem: unknown keys (with "did you mean" suggestions), missing keys, types, choices, ranges, the
family's rules, and the mesh against the devices. Every message starts with the schema's label ("config",
"CTR config", "TIGER config") and names the key, the value and what is allowed.

This module imports no model or data module at import time; `run_id` reaches the data only through
scaling_rec.provenance, because a run's identity includes its data's, and a CTR family's late-added keys through
that family's declaration (scaling_rec.models.ctr).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections

from scaling_rec.errors import ConfigError
from scaling_rec.families import CTR_FAMILIES

# A cross-key rule: the flattened config ({'section.key': value}) -> None, or the message of its ConfigError.
Rule = Callable[[Mapping[str, Any]], "str | None"]
_MESH_KEYS = ("mesh.data", "mesh.fsdp", "mesh.tensor")

# Keys added to a schema after results were first stored, with the default that reproduces the older
# behaviour: run_id() leaves them out at that value. One list for every schema (a key listed here that a
# family lacks is simply absent from its configs); the model keys of a CTR family added later are declared by
# its module instead (scaling_rec.models.ctr.CtrFamily.in_run_id_at_default).
ADDED_KEYS = {"train.loss": "sampled_softmax", "data.long_gap": 50, "data.long_p_signal": 0.02,
              "train.steps_per_call": 1, "data.path": "", "data.kcore": 0, "data.train_user_fraction": 1.0,
              "data.columns": {"user": "user", "item": "item", "timestamp": "timestamp", "rating": "", "action": "",
                               "weight": ""},
              "train.lr_decay": "constant", "train.final_lr_fraction": 0.1, "data.num_items": 0,
              "data.timestamp_unit": "s", "data.fields": {"label": "label", "categorical": "", "numeric": ""},
              "train.optimizer": "adamw", "train.label_smoothing": 0.0,
              "train.negative_sharing": 1, "model.matmul_dtype": "float32",
              # the rule before the key existed; the default is now 'sample' (configs without max_users drop it)
              "eval.users": "first"}
# Keys of ADDED_KEYS that a family's schema had from its start: there they always count. The CTR schema
# (scaling_rec.ctr_config) had data.path before the sequence schema added it, and train.optimizer before
# TIGER's schema added it; leaving them out changed every CTR run id (caught by tests/golden).
_ORIGINAL_KEYS = {family: ("data.path", "train.optimizer") for family in CTR_FAMILIES}


def _warmup_or_cosine(d: dict[str, Any]) -> bool:
    train = d.get("train", {})
    return "decay_start" not in train and (train.get("lr_decay") == "cosine" or train.get("warmup_steps", 0) > 0)


def _frappe(d: dict[str, Any]) -> bool:
    return d.get("data", {}).get("name") == "frappe" and d.get("model", {}).get("family") in CTR_FAMILIES


def _ctr_budget(d: dict[str, Any]) -> bool:
    return d.get("model", {}).get("family") in CTR_FAMILIES and d.get("train", {}).get("flops_budget", 0.0) > 0


NUMBER_FIXES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("lr_schedule_b03c251", _warmup_or_cosine),  # warm-up from lr/W, cosine ending on the last step
    ("frappe_negatives_d780587", _frappe),  # negatives distinct per user and context
    ("ctr_budget_rounds_up", _ctr_budget),  # a CTR FLOPs budget's steps round up (spent >= C), as sequential ones
)
"""Fixes that changed the numbers of some configs without changing the configs: (name, which configs). The runs
they touch get a new id (`run_id`), so a sweep retrains them instead of returning the results made before the fix
as finished; every other run keeps its id."""


def leaves(c: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """('section.key', value) of every leaf of `c` (nested ConfigDicts are descended into)."""
    for k, v in c.items():
        key = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict):
            yield from leaves(v, key + ".")
        else:
            yield key, v


def type_ok(value: Any, default: Any) -> bool:
    """Whether `value` may replace `default`: bool for bool, int (not bool) for int, int or float for float,
    a list or tuple for a sequence, else an instance of the default's type."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return isinstance(value, type(default))


def exactly_one_length(given: Mapping[str, Any]) -> str | None:
    """Rule: one training length, train.num_epochs, num_steps or flops_budget, is > 0."""
    keys = ("train.num_epochs", "train.num_steps", "train.flops_budget")
    if sum(given[k] > 0 for k in keys) != 1:
        return (f"set exactly one of {', '.join(repr(k) for k in keys)} (> 0); got "
                f"{', '.join(str(given[k]) for k in keys)}.")
    return None


@dataclasses.dataclass(frozen=True)
class Schema:
    """A family's config schema: its defaults and its constraints beyond the types.

    label: how messages name this schema ('config', 'CTR config', ...); module: the schema's module, named
    where a message says where the keys are declared; defaults: builds the default config, whose keys are
    the schema and whose values' types are the keys' types; choices: key -> allowed values; positive /
    non_negative: keys that must be > 0 / >= 0 (mesh.* may also be -1: "the remaining devices");
    fractions: keys in [0, 1); unit_fractions: keys in (0, 1]; positive_lists: keys holding a non-empty
    list of positive ints; rules: cross-key checks, run after the per-key ones in their order.
    """

    label: str
    module: str
    defaults: Callable[[], ml_collections.ConfigDict]
    choices: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    positive: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    fractions: tuple[str, ...] = ()
    unit_fractions: tuple[str, ...] = ()
    positive_lists: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()

    def _error(self, key: str, value: Any, what: str) -> ConfigError:
        return ConfigError(f"{self.label} key {key!r} = {value!r} {what}")

    def validate(self, config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
        """Checks keys, types, choices, ranges, the family's rules and (with `num_devices`) the mesh; raises
        ConfigError on the first problem.

        Args:
          config: a resolved config (defaults + preset + overrides).
          num_devices: when given, the mesh must cover exactly this many devices and the batch must
            divide over its data-parallel part.
        """
        schema = dict(leaves(self.defaults()))
        given = dict(leaves(config))
        path = self.module.replace(".", "/") + ".py"
        for key in given:
            if key not in schema:
                close = difflib.get_close_matches(key, schema, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown {self.label} key {key!r}.{hint} Known keys are listed in {path}.")
        for key, default in schema.items():
            if key not in given:
                raise ConfigError(f"{self.label} key {key!r} is missing; start from {self.module}.default_config().")
            if not type_ok(given[key], default):
                raise self._error(key, given[key], f"has type {type(given[key]).__name__}; expected "
                                                   f"{type(default).__name__}.")
        for key, allowed in self.choices.items():
            if given[key] not in allowed:
                raise self._error(key, given[key], f"is not one of {list(allowed)}.")
        for key in self.positive:
            if not given[key] > 0:
                raise self._error(key, given[key], "must be > 0.")
        for key in _MESH_KEYS:
            if key in given and not (given[key] > 0 or given[key] == -1):
                raise self._error(key, given[key], "must be > 0 (or -1: the remaining devices).")
        for key in self.non_negative:
            if given[key] < 0:
                raise self._error(key, given[key], "must be >= 0.")
        for key in self.fractions:
            if not 0.0 <= given[key] < 1.0:
                raise self._error(key, given[key], "must be in [0, 1).")
        for key in self.unit_fractions:
            if not 0.0 < given[key] <= 1.0:
                raise self._error(key, given[key], "must be in (0, 1].")
        for key in self.positive_lists:
            value = given[key]
            if not value or any(not isinstance(k, int) or isinstance(k, bool) or k <= 0 for k in value):
                raise self._error(key, value, "must be a non-empty list of positive ints.")
        for rule in self.rules:
            message = rule(given)
            if message:
                raise ConfigError(message)
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
    """ConfigError unless the mesh covers exactly `num_devices` and train.batch_size divides over data x fsdp."""
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
    """Stable short id of a resolved config (any family): the first 12 hex digits of the SHA-256 of its sorted JSON.

    Keys that cannot change a run's numbers (logging, data_dir, eval.users without eval.max_users) are left
    out, so that the same run launched with or without W&B is the same run; TIGER's train.time_limit_s, which
    only splits a run into resumed calls, counts as its default (0), so a call with another limit (or none)
    resumes a run that a limit left partial. What data_dir stood for, the
    data, enters as its content identity (scaling_rec.provenance.data_identity: a copy of the same files
    keeps the id, other files get a new one), left out for the canonical copies so that older ids stay
    valid. Keys added to a schema later (ADDED_KEYS) count only when they differ from the value that
    reproduces the runs made before them, so that adding a key keeps every finished run's id (and result)
    valid; a fix that changed a config's numbers (NUMBER_FIXES) enters the ids of the configs it touches.

    Raises:
      DataNotFoundError: an explicit data.data_dir that does not exist or lacks the dataset.
    """
    from scaling_rec.provenance import data_files, data_identity

    d = config.to_dict()
    d.pop("logging", None)
    d.get("data", {}).pop("data_dir", None)
    if not d.get("eval", {}).get("max_users"):  # which users a subset takes: no subset, no effect
        d.get("eval", {}).pop("users", None)
    if d.get("train", {}).get("time_limit_s"):  # where a call stops: a resumed run ends as an uninterrupted one
        d["train"]["time_limit_s"] = 0.0
    family = d.get("model", {}).get("family")
    original = _ORIGINAL_KEYS.get(family, ())
    added = ADDED_KEYS
    if family in CTR_FAMILIES:  # a CTR family added later declares its keys so (scaling_rec.models.ctr)
        from scaling_rec.models import ctr

        added = {**ADDED_KEYS, **ctr.added_keys()}
    for key, default in added.items():
        section, name = key.split(".")
        if key not in original and d.get(section, {}).get(name, default) == default:
            d.get(section, {}).pop(name, None)
    identity = data_identity(data_files(config))
    if identity is not None:
        d["data_identity"] = identity
    fixes = [name for name, touches in NUMBER_FIXES if touches(d)]
    if fixes:
        d["number_fixes"] = fixes
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
