"""The device mesh: three named axes ('data', 'fsdp', 'tensor'), checked before any compute.

'data' replicates parameters and splits the batch; 'fsdp' splits both the batch and the
parameters (fully-sharded data parallelism); 'tensor' splits the inner width of layers.
The data-parallel size (how many ways a batch is split) is data × fsdp.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import AxisType

from scaling_rec.errors import MeshError

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")


def _resolve_sizes(sizes: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replace a single -1 by the devices left over; MeshError when the sizes cannot fit."""
    asked = ", ".join(f"{n}={s}" for n, s in zip(MESH_AXES, sizes, strict=True))
    bad = [s for s in sizes if not isinstance(s, int) or isinstance(s, bool) or (s < 1 and s != -1)]
    if bad or list(sizes).count(-1) > 1:
        raise MeshError(
            f"mesh ({asked}): each size must be a positive int, and at most one may be -1 "
            f"(= the rest of the {num_devices} devices); set mesh.data / mesh.fsdp / mesh.tensor"
        )
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known != 0:
            raise MeshError(
                f"mesh ({asked}): the fixed sizes multiply to {known}, which does not divide the "
                f"{num_devices} devices; choose sizes whose product divides {num_devices}"
            )
        sizes = [num_devices // known if s == -1 else s for s in sizes]
    elif known != num_devices:
        raise MeshError(
            f"mesh ({asked}) needs {known} devices but {num_devices} are available; set "
            f"mesh.data / mesh.fsdp / mesh.tensor so their product is {num_devices}, or set one of "
            f"them to -1 to use the rest of the devices"
        )
    return tuple(sizes)


def make_mesh(data: int, fsdp: int, tensor: int, devices: Sequence[Any] | None = None) -> jax.sharding.Mesh:
    """A mesh with axes ('data', 'fsdp', 'tensor') over `devices` (default: all devices).

    One size may be -1 for the rest of the devices. Axes are of type Auto: shardings are
    propagated by the compiler from jit in/out shardings and sharding constraints.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = _resolve_sizes((data, fsdp, tensor), len(devices))
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def _mesh_value(mesh_config: Any, key: str, default: int) -> int:
    """`mesh_config.key` (ConfigDict, object or mapping), `default` when absent or None."""
    if isinstance(mesh_config, Mapping):
        value = mesh_config.get(key)
    else:
        value = getattr(mesh_config, key, None)
    return default if value is None else value


def make_mesh_from_config(config: Any, devices: Sequence[Any] | None = None) -> jax.sharding.Mesh:
    """The mesh of `config.mesh` (keys data, fsdp, tensor; defaults -1, 1, 1: pure data parallel)."""
    mesh_config = config.get("mesh") if isinstance(config, Mapping) else getattr(config, "mesh", None)
    mesh_config = mesh_config or {}
    return make_mesh(
        _mesh_value(mesh_config, "data", -1),
        _mesh_value(mesh_config, "fsdp", 1),
        _mesh_value(mesh_config, "tensor", 1),
        devices=devices,
    )


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    """How many ways the batch is split: data × fsdp."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def check_batch_divisible(batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """MeshError unless `train.batch_size` splits evenly over the data-parallel size."""
    dp = data_parallel_size(mesh)
    if batch_size < 1 or batch_size % dp != 0:
        lower = max(dp, batch_size // dp * dp)
        raise MeshError(
            f"train.batch_size={batch_size} is not divisible by the data-parallel size {dp} "
            f"(mesh data={mesh.shape['data']} × fsdp={mesh.shape['fsdp']}); set train.batch_size "
            f"to a multiple of {dp} (e.g. {lower} or {lower + dp}) or change mesh.data / mesh.fsdp"
        )
