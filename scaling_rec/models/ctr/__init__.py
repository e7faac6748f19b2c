"""The CTR ranking families, one module of this package each: adding a family is adding its module.

A family module holds everything about its family and ends in `FAMILY = CtrFamily(...)`: the model (an
nnx.Module, cat_BxF [+ num_BxM] -> logits_B), its own model.* config keys with their defaults and ranges,
the builder from a config, its forward FLOP formula, its named size ladder and the shapes of its
seconds-long test model. The rest of the library reads them from here: the CTR schema
(scaling_rec.ctr_config) adds the keys, scaling_rec.models.registry builds the model, scaling_rec.flops
counts FLOPs, scaling_rec.sweep.sizes names the rungs, and the golden, sharded-parity, FLOPs-vs-XLA and
ladder tests take every family. The family names are the module names: scaling_rec.families lists them from
this directory without importing anything, so the run id and the schema dispatch stay light.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from scaling_rec.families import CTR_FAMILIES

# The model.* keys every CTR family reads (scaling_rec.ctr_config): field embedding width, the norm and
# dropout of the MLPs, the top MLP (the task tower) before the logit, and the dtype of the dense layers'
# products (scaling_rec.models.layers.matmul).
COMMON_KEYS = ("family", "embed_dim", "norm", "dropout", "mlp_width", "mlp_depth", "matmul_dtype")
MATMUL_DTYPES = ("float32", "bfloat16")  # model.matmul_dtype's choices; layers.matmul implements them


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of a family's size ladder: the model.* values it sets and the N_dense it is stated to have
    on Frappe's 10 fields with embedding dim 10 and batch norm (tests/sweep/test_sizes.py recomputes it)."""

    values: Mapping[str, int]
    n_dense: int


@dataclasses.dataclass(frozen=True)
class CtrFamily:
    """A CTR family's declaration (see the package docstring).

    name: the family (its module's name, the value of model.family).
    keys: the model.* keys this family reads beyond COMMON_KEYS, with their defaults; a key shared with
      another family (DLRM's and Wukong's bottom MLP) must have the same default there.
    build: (model config, vocab sizes per field, number of dense features, common kwargs) -> the model;
      common kwargs are embed_dim, mlp_width, mlp_depth, norm, dropout_rate, matmul_dtype and rngs.
    forward_flops: (model config, number of categorical fields, number of dense features) -> forward FLOPs
      per example (scaling_rec.flops' conventions; checked against XLA's cost analysis in the tests).
    ladder: rung name -> Rung; the sweep names it '<family>/<rung>' (scaling_rec.sweep.sizes).
    ladder_doc: where the ladder comes from (paper section, what grows).
    positive / non_negative: the keys that must be > 0 / >= 0.
    choices: key -> allowed values.
    in_run_id_at_default: False for a family added after results were stored: its keys then count in a run
      id only when they differ from their default, so that every stored run keeps its id.
    tiny: model.* values of the family's test-sized model, applied over the shared tiny widths of the golden
      and sharded-parity tests.
    """

    name: str
    keys: Mapping[str, Any]
    build: Callable[..., Any]
    forward_flops: Callable[[Any, int, int], float]
    ladder: Mapping[str, Rung] = dataclasses.field(default_factory=dict)
    ladder_doc: str = ""
    positive: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    choices: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    in_run_id_at_default: bool = True
    tiny: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def get(name: str) -> CtrFamily:
    """The declaration of CTR family `name` (imports its module); ValueError naming the families if unknown."""
    if name not in CTR_FAMILIES:
        raise ValueError(f"unknown CTR model.family {name!r}; the CTR families are {list(CTR_FAMILIES)} "
                         f"(one module each in scaling_rec/models/ctr/).")
    family = importlib.import_module(f"{__name__}.{name}").FAMILY
    if family.name != name:
        raise ValueError(f"scaling_rec/models/ctr/{name}.py declares FAMILY.name = {family.name!r}; it must be "
                         f"the module's name.")
    return family


@functools.cache
def own_keys() -> dict[str, Any]:
    """Every family's own model.* keys with their defaults (ValueError when two families disagree on one)."""
    keys: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name in CTR_FAMILIES:
        for key, default in get(name).keys.items():
            if key in COMMON_KEYS:
                raise ValueError(f"CTR family {name!r} declares the common key {key!r}.")
            if key in keys and keys[key] != default:
                raise ValueError(f"model.{key}: default {default!r} in {name!r}, {keys[key]!r} in {owner[key]!r}.")
            keys[key], owner[key] = default, owner.get(key, name)
    return keys


@functools.cache
def added_keys() -> dict[str, Any]:
    """'model.<key>' -> default of the keys that count in a run id only off their default: those of families
    with in_run_id_at_default=False that no older family shares."""
    older = {k for n in CTR_FAMILIES if get(n).in_run_id_at_default for k in get(n).keys}
    return {f"model.{k}": v for n in CTR_FAMILIES if not get(n).in_run_id_at_default
            for k, v in get(n).keys.items() if k not in older}
