"""The one table of logical-axis rules: logical array-axis names -> mesh axes.

Model code names the axes of parameters and activations with logical names ('batch', 'tokens',
'vocab', 'embed', 'mlp', 'heads', 'qkv', 'kv', 'seq', ...); this module alone maps them to the mesh
axes ('data', 'fsdp', 'tensor') of `scaling_rec.parallel.mesh`. The FSDP scheme:

- inputs and activations split their leading 'batch' / 'tokens' axis over ('data', 'fsdp');
- weights split their 'embed' axis over 'fsdp' and 'mlp' / 'heads' / 'qkv' over 'tensor';
- embedding-table rows ('vocab') split over ('fsdp', 'tensor'), configurable by `mesh.embedding_axes`.

A mesh axis used twice in one spec is dropped the second time, so an activation
('tokens', 'embed') is P(('data', 'fsdp'), None) and a table ('vocab', 'embed') is
P(('fsdp', 'tensor'), None). When the array's shape is known, mesh axes that do not divide a
dimension are dropped too (`fit_spec_to_shape`): jax cannot shard unevenly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from scaling_rec.errors import ConfigError, MeshError
from scaling_rec.parallel.mesh import MESH_AXES

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]
LogicalAxes = Sequence[str | None]

DATA_PARALLEL_AXES: tuple[str, ...] = ("data", "fsdp")
DEFAULT_EMBEDDING_AXES: tuple[str, ...] = ("fsdp", "tensor")

DEFAULT_RULES: Rules = (
    ("batch", DATA_PARALLEL_AXES),  # examples in a batch
    ("tokens", DATA_PARALLEL_AXES),  # the flat jagged token axis T
    ("vocab", DEFAULT_EMBEDDING_AXES),  # embedding-table rows
    ("embed", "fsdp"),  # model width D (weights; activations lose it to 'batch'/'tokens')
    ("mlp", "tensor"),  # MLP hidden width
    ("heads", "tensor"),  # attention heads
    ("qkv", "tensor"),  # fused projection outputs
    ("kv", None),  # per-head width
    ("seq", None),  # positions of a padded sequence
    ("layers", None),  # stacked (scanned) layers
    ("fields", None),  # CTR feature fields
    ("codebook", None),  # RQ-VAE codebook entries
)


def _get(config: Any, key: str) -> Any:
    """`config.key` for ConfigDicts/objects, `config[key]` for mappings, None when absent."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def _normalise_axes(value: Any, where: str) -> MeshAxes:
    """None, a mesh-axis name or a sequence of them -> MeshAxes; ConfigError naming `where`."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in MESH_AXES]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(
            f"{where}={value!r}: expected mesh axes from {MESH_AXES}, each at most once "
            f"(e.g. ['fsdp', 'tensor'], or [] to replicate)"
        )
    if not names:
        return None
    return names[0] if len(names) == 1 else names


def rules_for(config: Any = None, overrides: Mapping[str, Any] | None = None) -> Rules:
    """The rules table for a run config.

    `config.mesh.embedding_axes` (absent or None: ('fsdp', 'tensor'); [] replicates the tables)
    picks the mesh axes of embedding-table rows. `overrides` maps further logical names to mesh
    axes (added, or replacing the default entry) for code that needs a new logical name.
    """
    table = dict(DEFAULT_RULES)
    embedding_axes = _get(_get(config, "mesh"), "embedding_axes")
    if embedding_axes is not None:
        table["vocab"] = _normalise_axes(embedding_axes, "mesh.embedding_axes")
    for name, axes in (overrides or {}).items():
        table[name] = _normalise_axes(axes, f"rules override {name!r}")
    return tuple(table.items())


def _lookup(name: str, rules: Rules) -> tuple[str, ...]:
    """The mesh axes a logical name maps to (first matching rule), as a tuple."""
    for logical, axes in rules:
        if logical == name:
            if axes is None:
                return ()
            return (axes,) if isinstance(axes, str) else tuple(axes)
    known = ", ".join(logical for logical, _ in rules)
    raise ConfigError(
        f"logical axis {name!r} has no sharding rule (known: {known}); add it to DEFAULT_RULES in "
        f"scaling_rec/parallel/rules.py or pass rules_for(config, overrides={{{name!r}: None}})"
    )


def _entry(axes: Sequence[str]) -> MeshAxes:
    """One PartitionSpec entry from a tuple of mesh axes."""
    if not axes:
        return None
    return axes[0] if len(axes) == 1 else tuple(axes)


def logical_to_spec(logical_axes: LogicalAxes, rules: Rules = DEFAULT_RULES) -> PartitionSpec:
    """PartitionSpec for an array whose dimensions carry `logical_axes` (None = replicated).

    A mesh axis already used by an earlier dimension is dropped from later ones.
    """
    used: set[str] = set()
    entries: list[MeshAxes] = []
    for name in logical_axes:
        axes = () if name is None else _lookup(name, rules)
        kept = tuple(a for a in axes if a not in used)
        used.update(kept)
        entries.append(_entry(kept))
    return PartitionSpec(*entries)


def _spec_axes(entry: Any) -> tuple[str, ...]:
    """The mesh axes of one PartitionSpec entry."""
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def fit_spec_to_shape(spec: PartitionSpec, shape: Sequence[int], axis_sizes: Mapping[str, int]) -> PartitionSpec:
    """Drop, per dimension, the mesh axes from the first that no longer divides the dimension.

    `axis_sizes` maps mesh-axis names to sizes (`mesh.shape`); axes of size 1 are kept, they cost
    nothing. Raises MeshError when the spec has more entries than the array has dimensions.
    """
    if len(spec) > len(shape):
        raise MeshError(f"partition spec {spec} has {len(spec)} entries but the array has shape {shape}")
    entries: list[MeshAxes] = []
    for entry, dim in zip(spec, shape, strict=False):
        kept: list[str] = []
        for axis in _spec_axes(entry):
            if dim % (math.prod(axis_sizes[a] for a in kept) * axis_sizes[axis]) != 0:
                break
            kept.append(axis)
        entries.append(_entry(kept))
    return PartitionSpec(*entries)


def named_sharding(
    mesh: jax.sharding.Mesh,
    logical_axes: LogicalAxes,
    rules: Rules = DEFAULT_RULES,
    shape: Sequence[int] | None = None,
) -> NamedSharding:
    """NamedSharding on `mesh` for `logical_axes`; fitted to `shape` when it is given."""
    spec = logical_to_spec(logical_axes, rules)
    if shape is not None:
        if len(logical_axes) != len(shape):
            raise MeshError(
                f"logical axes {tuple(logical_axes)} name {len(logical_axes)} dimensions but the array "
                f"has shape {tuple(shape)}; give one logical name (or None) per dimension"
            )
        spec = fit_spec_to_shape(spec, shape, dict(mesh.shape))
    return NamedSharding(mesh, spec)
