"""Child process of the sharding tests: runs on 8 forced host CPU devices, writes results.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=8 python _sharded_checks.py OUT_DIR
Writes OUT_DIR/results.json and OUT_DIR/grads_<mesh>.npz (flattened loss gradients).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec.errors import MeshError
from scaling_rec.parallel.mesh import check_batch_divisible, make_mesh, make_mesh_from_config
from scaling_rec.parallel.rules import DEFAULT_RULES
from scaling_rec.parallel.sharding import (
    abstract_state,
    create_sharded,
    per_device_bytes,
    replicated,
    shard_batch,
    shard_shapes,
    sharded_init,
    state_shardings,
    use_mesh,
    with_logical_axes,
    with_logical_constraint,
)
from tests.parallel._toy import make_toy, toy_batch

jax.config.update("jax_numpy_rank_promotion", "raise")

MESHES = {"ref": (1, 1, 1), "data8": (8, 1, 1), "fsdp8": (1, 8, 1), "d2f2t2": (2, 2, 2)}
BIG_ROWS, BIG_WIDTH = 10_000_000, 64


def _error(fn) -> str | None:
    """The MeshError message `fn()` raises, None when it raises none."""
    try:
        fn()
    except MeshError as e:
        return str(e)
    return None


def mesh_checks() -> dict:
    """Meshes from configs with -1, and the errors for sizes that do not fit."""
    config = ml_collections.ConfigDict({"mesh": {"data": -1, "fsdp": 2, "tensor": 2}})
    mesh = make_mesh_from_config(config)
    return {
        "device_count": jax.device_count(),
        "from_config": dict(mesh.shape),
        "from_dict_default": dict(make_mesh_from_config({}).shape),
        "tensor_rest": dict(make_mesh(1, 2, -1).shape),
        "mismatch": _error(lambda: make_mesh(3, 1, 1)),
        "rest_not_dividing": _error(lambda: make_mesh(-1, 3, 1)),
        "two_rests": _error(lambda: make_mesh(-1, -1, 1)),
        "batch_bad": _error(lambda: check_batch_divisible(12, make_mesh(2, 4, 1))),
        "batch_ok": _error(lambda: check_batch_divisible(16, make_mesh(2, 4, 1))),
        "strict_uneven": _error(lambda: create_sharded(_uneven_table, make_mesh(1, 8, 1), strict=True)),
        "lenient_uneven_spec": str(
            abstract_state(_uneven_table, make_mesh(1, 4, 2))[1]["embedding"].get_value().sharding.spec
        ),
    }


def _uneven_table() -> nnx.Embed:
    """1004 rows: divisible by 4 but not by 8."""
    init = with_logical_axes(nnx.initializers.normal(0.02), ("vocab", "embed"))
    return nnx.Embed(1004, 8, rngs=nnx.Rngs(0), embedding_init=init)


def _loss_and_grad(graphdef, state, batch):
    def loss_fn(state):
        return nnx.merge(graphdef, state).loss(batch["item_ids_T"], batch["target_ids_T"])

    return jax.value_and_grad(loss_fn)(state)


def model_checks(name: str, sizes: tuple[int, int, int], out_dir: pathlib.Path) -> dict:
    """Create the toy model sharded on one mesh, record shard shapes, loss and gradients."""
    devices = jax.devices()[: int(np.prod(sizes))]
    mesh = make_mesh(*sizes, devices=devices)
    model = create_sharded(make_toy, mesh, DEFAULT_RULES)
    graphdef, state = nnx.split(model)
    shardings = state_shardings(state, mesh, DEFAULT_RULES)
    batch = shard_batch(toy_batch(), mesh)
    with use_mesh(mesh):
        step = jax.jit(lambda s, b: _loss_and_grad(graphdef, s, b), out_shardings=(replicated(mesh), shardings))
        loss, grads = step(state, batch)
    flat = {jax.tree_util.keystr(p): np.asarray(g) for p, g in jax.tree_util.tree_leaves_with_path(grads)}
    np.savez(out_dir / f"grads_{name}.npz", **flat)
    return {
        "loss": float(loss),
        "shard_shapes": {k: list(v) for k, v in shard_shapes(_flat(state)).items()},
        "grad_shard_shapes": {k: list(v) for k, v in shard_shapes(_flat(grads)).items()},
        "num_shards": {k: len(a.addressable_shards) for k, a in _flat(state).items()},
        "param_specs": {k: str(a.sharding.spec) for k, a in _flat(state).items()},
        "batch_spec": str(batch["item_ids_T"].sharding.spec),
    }


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def big_table_checks() -> dict:
    """A 10M x 64 f32 table under 8-way row sharding, abstractly (never materialised)."""
    mesh = make_mesh(1, 8, 1)

    def factory() -> nnx.Embed:
        init = with_logical_axes(nnx.initializers.normal(0.02), ("vocab", "embed"))
        return nnx.Embed(BIG_ROWS, BIG_WIDTH, rngs=nnx.Rngs(0), embedding_init=init)

    _, abstract = abstract_state(factory, mesh)
    table = abstract["embedding"].get_value()
    _, init = sharded_init(factory, mesh)
    memory = init.lower().compile().memory_analysis()
    return {
        "total_bytes": BIG_ROWS * BIG_WIDTH * 4,
        "per_device_bytes": per_device_bytes(abstract),
        "shard_shape": list(table.sharding.shard_shape(table.shape)),
        "compiled_output_bytes": int(memory.output_size_in_bytes),
        "compiled_temp_bytes": int(memory.temp_size_in_bytes),
    }


def batch_checks() -> dict:
    """shard_batch on jagged-batch fields, and an activation constraint inside jit."""
    mesh = make_mesh(2, 2, 2)
    batch = {
        "item_ids_T": np.arange(64, dtype=np.int32),
        "offsets_B1": np.arange(9, dtype=np.int32),
        "emb_BxD": np.ones((8, 4), np.float32),
        "num_sequences": 8,
    }
    placed = shard_batch(batch, mesh)
    with use_mesh(mesh):
        constrained = jax.jit(lambda x: with_logical_constraint(x * 2, ("batch", "mlp")))(placed["emb_BxD"])
    outside = with_logical_constraint(np.ones((8, 4), np.float32), ("batch", "mlp"))
    return {
        "tokens_spec": str(placed["item_ids_T"].sharding.spec),
        "offsets_spec": str(placed["offsets_B1"].sharding.spec),
        "tokens_shard_shape": list(placed["item_ids_T"].addressable_shards[0].data.shape),
        "num_sequences": placed["num_sequences"],
        "constrained_spec": str(constrained.sharding.spec),
        "outside_is_noop": isinstance(outside, np.ndarray),
    }


def main(out_dir: pathlib.Path) -> None:
    start = time.perf_counter()
    results = {"mesh": mesh_checks(), "batch": batch_checks(), "big_table": big_table_checks(), "models": {}}
    for name, sizes in MESHES.items():
        results["models"][name] = model_checks(name, sizes, out_dir)
    results["wall_time_s"] = time.perf_counter() - start
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
