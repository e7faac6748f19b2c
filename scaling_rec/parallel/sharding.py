"""Sharded parameters and batches from logical-axis metadata.

A parameter declares the logical names of its dimensions through Flax NNX's `out_sharding`
metadata (flax 0.12.8; `sharding` and `sharding_names` are deprecated aliases):

    nnx.Param(init(key, (V, D)), out_sharding=('vocab', 'embed'), eager_sharding=False)
    nnx.Embed(V, D, embedding_init=with_logical_axes(init, ('vocab', 'embed')), rngs=rngs)

`eager_sharding=False` lets the module be built without a mesh (flax's eager sharding would
need one, and would read the logical names as mesh axes); `create_sharded` places every array.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from scaling_rec.errors import MeshError
from scaling_rec.parallel.rules import (
    DATA_PARALLEL_AXES,
    DEFAULT_RULES,
    LogicalAxes,
    Rules,
    fit_spec_to_shape,
    logical_to_spec,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=nnx.Module)

_ACTIVE_RULES: contextvars.ContextVar[Rules] = contextvars.ContextVar("scaling_rec_rules", default=DEFAULT_RULES)


def with_logical_axes(initializer: Callable[..., jax.Array], logical_axes: LogicalAxes) -> Callable[..., Any]:
    """`initializer` whose parameter carries `logical_axes` (one name or None per dimension)."""
    return nnx.with_partitioning(initializer, tuple(logical_axes), eager_sharding=False)


def logical_axes_of(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names a Variable was declared with, None when it has none."""
    metadata = variable.get_metadata()
    axes = metadata.get("out_sharding") or metadata.get("sharding_names")
    return None if axes is None else tuple(axes)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _variable_sharding(
    path: tuple[Any, ...], variable: nnx.Variable, mesh: jax.sharding.Mesh, rules: Rules, strict: bool
) -> nnx.Variable:
    """The Variable with its value replaced by its NamedSharding on `mesh`."""
    shape = getattr(variable.get_value(), "shape", None)
    axes = logical_axes_of(variable)
    if shape is None or not axes:
        return variable.replace(NamedSharding(mesh, PartitionSpec()))
    name = jax.tree_util.keystr(path)
    if len(axes) != len(shape):
        raise MeshError(
            f"parameter {name} has shape {tuple(shape)} but logical axes {axes}; declare one "
            f"logical name (or None) per dimension"
        )
    spec = logical_to_spec(axes, rules)
    fitted = fit_spec_to_shape(spec, shape, dict(mesh.shape))
    if fitted != spec:
        message = (
            f"parameter {name} of shape {tuple(shape)} with logical axes {axes} cannot be split as "
            f"{spec} on mesh {dict(mesh.shape)} (jax shards only evenly); using {fitted}. Pad the "
            f"dimension to a multiple of the mesh axes' product to shard it fully"
        )
        if strict:
            raise MeshError(message)
        log.warning(message)
    return variable.replace(NamedSharding(mesh, fitted))


def state_shardings(
    model: nnx.Module | nnx.State,
    mesh: jax.sharding.Mesh,
    rules: Rules = DEFAULT_RULES,
    *,
    strict: bool = False,
) -> nnx.State:
    """NamedSharding tree matching `nnx.state(model)` (or the given state), for jit shardings.

    Variables without logical axes are replicated. A mesh axis that does not divide its
    dimension is dropped with a warning (strict=True: MeshError instead).
    """
    state = model if isinstance(model, nnx.State) else nnx.state(model)
    return jax.tree_util.tree_map_with_path(
        lambda path, v: _variable_sharding(path, v, mesh, rules, strict), state, is_leaf=_is_variable
    )


def abstract_state(
    model_factory: Callable[[], M],
    mesh: jax.sharding.Mesh,
    rules: Rules = DEFAULT_RULES,
    *,
    strict: bool = False,
) -> tuple[nnx.GraphDef[M], nnx.State]:
    """(graphdef, state of ShapeDtypeStructs carrying their shardings) without allocating.

    The abstract state is also the restore target for sharded checkpoints.
    """
    with nnx.use_eager_sharding(False):
        abstract_model = nnx.eval_shape(model_factory)
    graphdef, state = nnx.split(abstract_model)
    shardings = state_shardings(state, mesh, rules, strict=strict)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)
    return graphdef, abstract


def sharded_init(
    model_factory: Callable[[], M],
    mesh: jax.sharding.Mesh,
    rules: Rules = DEFAULT_RULES,
    *,
    strict: bool = False,
) -> tuple[nnx.GraphDef[M], Callable[[], nnx.State]]:
    """(graphdef, jitted init) whose init() returns the model's state, each array born sharded.

    `init.lower().compile().memory_analysis()` tells the per-device bytes before anything runs.
    """
    graphdef, abstract = abstract_state(model_factory, mesh, rules, strict=strict)
    shardings = jax.tree.map(lambda a: a.sharding, abstract)

    def init() -> nnx.State:
        with nnx.use_eager_sharding(False):
            return nnx.split(model_factory())[1]

    return graphdef, jax.jit(init, out_shardings=shardings)


def create_sharded(
    model_factory: Callable[[], M],
    mesh: jax.sharding.Mesh,
    rules: Rules = DEFAULT_RULES,
    *,
    strict: bool = False,
) -> M:
    """Build `model_factory()` with every array created already sharded on `mesh`.

    The factory runs once abstractly (shapes -> shardings through `rules`) and once under
    `jax.jit(..., out_shardings=...)`, so no device ever holds a whole sharded parameter.
    The factory must be deterministic (fixed seeds), as it runs twice.
    """
    graphdef, init = sharded_init(model_factory, mesh, rules, strict=strict)
    return nnx.merge(graphdef, init())


def per_device_bytes(tree: Any) -> int:
    """Bytes one device holds for `tree` (jax Arrays or ShapeDtypeStructs with shardings)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shard_shape = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard_shape) * np.dtype(leaf.dtype).itemsize
    return total


def _place(x: Any, mesh: jax.sharding.Mesh) -> Any:
    """One host array -> a global jax Array, leading axis over ('data', 'fsdp') when it divides."""
    if isinstance(x, int | float | bool | str) or not hasattr(x, "shape"):
        return x
    local = np.asarray(x)
    if local.ndim == 0:
        spec, global_shape = PartitionSpec(), local.shape
    else:
        global_shape = (local.shape[0] * jax.process_count(), *local.shape[1:])
        spec = PartitionSpec(DATA_PARALLEL_AXES)
        if global_shape[0] % math.prod(mesh.shape[a] for a in DATA_PARALLEL_AXES) != 0:
            spec, global_shape = PartitionSpec(), local.shape
            _check_same_on_every_process(local)
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local, global_shape)


def _check_same_on_every_process(local: np.ndarray) -> None:
    """MeshError unless every process passes the same `local` (a replicated array must be one value): a
    process's own rows that do not split over the mesh were taken as the whole array, silently different on
    each process (2 processes x 3 rows on 8 devices summed to 3 and 33 instead of 36)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    every = np.asarray(multihost_utils.process_allgather(local, tiled=False))
    if not all(np.array_equal(every[0], x, equal_nan=every.dtype.kind in "fc") for x in every[1:]):
        raise MeshError(f"an array of shape {local.shape} whose leading axis does not split over the mesh's data "
                        "axes differs between processes: each process passed its own rows. Make the global batch "
                        "a multiple of data x fsdp (per process: of its local devices).")


def shard_batch(batch: T, mesh: jax.sharding.Mesh) -> T:
    """Place a pytree of host arrays on `mesh`, each leading axis split over ('data', 'fsdp').

    Works for [B, ...] example axes and the flat jagged token axis [T]. With several processes
    each passes its own rows and the global leading axis is their concatenation. Arrays whose
    leading axis does not split evenly (e.g. offsets [B+1]) and 0-d arrays are replicated (every
    process must then pass the same values); Python scalars are left as they are.
    A jagged batch built separately on each process cannot meet that: its offsets index its own
    tokens only, so the concatenated token axis would be read with the wrong offsets. Use
    `place_batch` (one global batch, each process sending its rows) for jagged batches; the
    training loops do.
    """
    return jax.tree.map(lambda x: _place(x, mesh), batch)


def _place_rows(x: Any, mesh: Any) -> Any:
    """One global host array (the same on every process) -> a global jax Array from this process's rows.

    The leading axis (examples [B, ...] or jagged tokens [T]) is split over ('data', 'fsdp') when it
    divides, else replicated (offsets [B+1]; 0-d arrays); the rule of `shard_batch`, so on one process
    the result is the same array with the same sharding. With several processes each one passes only
    the contiguous rows its devices hold to `jax.make_array_from_process_local_data`.
    """
    if isinstance(x, int | float | bool | str) or not hasattr(x, "shape"):
        return x
    x = np.asarray(x)
    split = x.ndim > 0 and x.shape[0] % math.prod(mesh.shape[a] for a in DATA_PARALLEL_AXES) == 0
    sharding = NamedSharding(mesh, PartitionSpec(DATA_PARALLEL_AXES) if split else PartitionSpec())
    local = x
    if split and jax.process_count() > 1:
        lo, hi = process_rows(sharding, x.shape)
        local = x[lo:hi]
    return jax.make_array_from_process_local_data(sharding, local, x.shape)


def process_rows(sharding: NamedSharding, shape: tuple[int, ...]) -> tuple[int, int]:
    """The rows [lo, hi) of the leading axis of an array of `shape` that this process's devices hold under
    `sharding`; MeshError when they are not contiguous."""
    rows = {(s[0].start or 0, shape[0] if s[0].stop is None else s[0].stop)
            for s in sharding.addressable_devices_indices_map(shape).values()}
    lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
    if sum(b - a for a, b in rows) != hi - lo:
        raise MeshError(f"process {jax.process_index()} holds non-contiguous rows {sorted(rows)} of a batch "
                        f"axis of {shape[0]}; build the mesh so that each process's devices are adjacent")
    return lo, hi


def place_batch(batch: Any, mesh: Any) -> Any:
    """Places a global batch, built identically on every process from the deterministic plan, on `mesh`.

    Each process transfers only its share (its rows of every split array); the global array equals
    the one-process batch. One process: the same placement as `shard_batch`.
    """
    return jax.tree.map(lambda x: _place_rows(x, mesh), batch)


def init_opt_state(optimizer: Any, params: Any, mesh: jax.sharding.Mesh) -> Any:
    """optimizer.init(params) with the state placed explicitly: moments sharded like their parameters,
    counters and moments of another shape than their parameter's (Adafactor's factored row and column
    statistics) replicated. (A plain jit would put the zeros, which do not depend on the parameters'
    values, on one device.)"""
    shardings = optax.tree_map_params(optimizer, lambda m, p: p.sharding if m.shape == p.shape else replicated(mesh),
                                      jax.eval_shape(optimizer.init, params), params,
                                      transform_non_params=lambda _: replicated(mesh))
    return jax.jit(optimizer.init, out_shardings=shardings)(params)


@contextlib.contextmanager
def use_mesh(mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[jax.sharding.Mesh]:
    """Context in which `with_logical_constraint` shards activations on `mesh` with `rules`."""
    token = _ACTIVE_RULES.set(rules)
    try:
        with jax.set_mesh(mesh):
            yield mesh
    finally:
        _ACTIVE_RULES.reset(token)


def with_logical_constraint(x: jax.Array, logical_axes: LogicalAxes, rules: Rules | None = None) -> jax.Array:
    """Constrain an activation's sharding by logical names; a no-op outside a mesh context.

    The mesh is the one set by `use_mesh` (or `jax.set_mesh`); `rules` default to the ones given
    to `use_mesh`. Mesh axes that do not divide a dimension are dropped.
    """
    if len(logical_axes) != x.ndim:
        raise MeshError(
            f"logical axes {tuple(logical_axes)} name {len(logical_axes)} dimensions but the "
            f"activation has shape {x.shape}; give one logical name (or None) per dimension"
        )
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_spec(logical_axes, _ACTIVE_RULES.get() if rules is None else rules)
    spec = fit_spec_to_shape(spec, x.shape, dict(mesh.shape))
    return jax.lax.with_sharding_constraint(x, spec)


def shard_shapes(tree: Any) -> Any:
    """Per-device shard shape of every leaf (Arrays or ShapeDtypeStructs with shardings)."""
    return jax.tree.map(lambda leaf: tuple(leaf.sharding.shard_shape(leaf.shape)), tree)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """The fully replicated sharding on `mesh` (scalars such as a loss)."""
    return NamedSharding(mesh, PartitionSpec())


__all__: Sequence[str] = (
    "abstract_state",
    "create_sharded",
    "logical_axes_of",
    "per_device_bytes",
    "replicated",
    "shard_batch",
    "place_batch",
    "process_rows",
    "init_opt_state",
    "shard_shapes",
    "sharded_init",
    "state_shardings",
    "use_mesh",
    "with_logical_axes",
    "with_logical_constraint",
)
