"""Child of test_models_sharded: every model's real train step on 8 forced host CPU devices.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=8 python _child_models.py OUT_DIR FAMILY|errors
For the family and each mesh ((1,1,1) on one device, data=8, fsdp=8, data=2 x fsdp=2 x tensor=2) one
call of the engine's `make_train_step` on the same jagged batch, with an optimiser that stores
the gradients in its state (so the gradients are exactly the ones the real step computes).
Writes OUT_DIR/<family>.json and OUT_DIR/grads_<family>_<mesh>.npz. With `errors`: OUT_DIR/errors.json,
the config errors of `train_and_evaluate` on these 8 devices and the compilations they triggered.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling_rec.data.pipeline import TrainStream
from scaling_rec.families import CTR_FAMILIES
from scaling_rec.models.registry import build
from scaling_rec.parallel.mesh import make_mesh
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import replicated, shard_batch, sharded_init
from scaling_rec.train.engine import make_train_step
from scaling_rec.train.inputs import prepare
from scaling_rec.train.loop import place_batch, train_and_evaluate
from scaling_rec.train.step import TrainState, make_loss
from tests.parallel._child_common import config_error, load_ctr_data, record_compiles, tiny_config, tiny_ctr_config

jax.config.update("jax_numpy_rank_promotion", "raise")

MESHES = {"ref": (1, 1, 1), "data8": (8, 1, 1), "fsdp8": (1, 8, 1), "d2f2t2": (2, 2, 2)}
TABLES = ("['items']['table'].value", "['embedding']['table']['table'].value")


def capture_gradients() -> optax.GradientTransformation:
    """An 'optimiser' whose state after a step is that step's gradients; parameters stay as they are."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        del state, params
        return jax.tree.map(jnp.zeros_like, grads), grads

    return optax.GradientTransformation(init, update)


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _shards(array: jax.Array) -> list[list[int]]:
    """Shapes of the buffers that the devices actually hold."""
    return sorted({tuple(s.data.shape) for s in array.addressable_shards})


def _sequence_setup(family: str, mesh):
    """(config, model factory, state split, batch, step maker) of a sequence model (HSTU, SASRec)."""
    config = tiny_config(family)
    inputs = prepare(config)
    host_batch = next(TrainStream(inputs.train, inputs.spec, seed=config.seed, time_origin=inputs.time_origin,
                                  prefetch=0).iterate(0))
    has_time = inputs.has_time and config.model.time_bias

    def factory() -> nnx.Module:
        return build(config, inputs.num_items, time_bias=has_time, rngs=nnx.Rngs(params=config.seed))

    graphdef, init = sharded_init(factory, mesh, rules_for(config))
    params = init()
    capture = capture_gradients()
    state = TrainState(params=params, opt_state=_init_capture(capture, params),
                       step=jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh)))
    return state, host_batch, make_train_step(make_loss(graphdef, config.train), capture, config.seed)


def _ctr_setup(family: str, mesh):
    """The same for a CTR model (Wukong, DLRM, DCNv2): BCE step of scaling_rec.train.ctr_loop."""
    from scaling_rec.models.registry import build_ctr_model
    from scaling_rec.train.ctr_loop import make_loss as ctr_loss

    config = tiny_ctr_config(family)
    data = load_ctr_data(config)

    def factory() -> nnx.Module:
        return build_ctr_model(config.model, data.vocab_sizes, data.num_dense, nnx.Rngs(params=config.seed))

    graphdef, init = sharded_init(factory, mesh, rules_for(config))
    graphdef, params, stats = nnx.split(nnx.merge(graphdef, init()), nnx.Param, nnx.BatchStat)
    capture = capture_gradients()
    state = TrainState(params=params, opt_state=_init_capture(capture, params),
                       step=jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh)), rest=stats)
    rows = np.arange(config.train.batch_size)
    host_batch = {"cat": data.train.cat_NxF[rows], "label": data.train.label_N[rows]}
    if data.train.num_NxM is not None:
        host_batch["num"] = data.train.num_NxM[rows]
    return state, host_batch, make_train_step(ctr_loss(graphdef, config), capture, config.seed)


def _init_capture(capture: optax.GradientTransformation, params):
    """The capturing optimiser's state, placed like the parameters."""
    return jax.jit(capture.init, out_shardings=jax.tree.map(lambda x: x.sharding, params))(params)


def one_step(family: str, mesh_name: str, out_dir: pathlib.Path) -> dict:
    """Loss, gradients and shardings of one real train step of `family` on one mesh."""
    sizes = MESHES[mesh_name]
    mesh = make_mesh(*sizes, devices=jax.devices()[: int(np.prod(sizes))])
    setup = _ctr_setup if family in CTR_FAMILIES else _sequence_setup
    state, host_batch, train_step = setup(family, mesh)
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(train_step, in_shardings=(state_sharding, None), out_shardings=(state_sharding, None))
    with jax.set_mesh(mesh):
        batch = place_batch(host_batch, mesh)
        new_state, metrics = step(state, batch)
    params = state.params
    new_params, grads_tree = new_state.params, new_state.opt_state
    grads, flat_params = _flat(grads_tree), _flat(params)
    np.savez(out_dir / f"grads_{family}_{mesh_name}.npz", **{k: np.asarray(v) for k, v in grads.items()})
    table = next(k for k in flat_params if k in TABLES)
    dense = {k: v for k, v in flat_params.items() if k != table and v.ndim == 2}
    largest = max(dense, key=lambda k: dense[k].size)
    placed_like_shard_batch = all(
        a.sharding == b.sharding and np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(shard_batch(host_batch, mesh)), strict=True)
    )
    tokens = batch.item_ids_T if family not in CTR_FAMILIES else batch["cat"]
    return {
        "loss": float(metrics["loss"]),
        "table": table,
        "largest_dense": largest,
        "shapes": {k: list(v.shape) for k, v in flat_params.items()},
        "specs": {k: str(v.sharding.spec) for k, v in flat_params.items()},
        "param_shards": {k: [list(s) for s in _shards(v)] for k, v in flat_params.items()},
        "grad_shards": {k: [list(s) for s in _shards(v)] for k, v in grads.items()},
        "num_devices": len(flat_params[table].sharding.device_set),
        "batch_spec": str(tokens.sharding.spec),
        "batch_rows": int(tokens.shape[0]),
        "offsets_spec": None if family in CTR_FAMILIES else str(batch.offsets_B1.sharding.spec),
        "placed_like_shard_batch": placed_like_shard_batch,
        "params_unchanged": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                                zip(jax.tree.leaves(params), jax.tree.leaves(new_params), strict=True)),
    }


def errors(out_dir: pathlib.Path) -> dict:
    record_compiles()
    return {
        "device_count": jax.device_count(),
        "mesh_mismatch": config_error(train_and_evaluate, tiny_config("hstu"), out_dir / "w_mesh",
                                      mesh__data=3, mesh__fsdp=1),
        "batch_not_divisible": config_error(train_and_evaluate, tiny_config("hstu"), out_dir / "w_batch",
                                            mesh__data=8, mesh__fsdp=1, train__batch_size=12),
    }


if __name__ == "__main__":
    out, what = pathlib.Path(sys.argv[1]), sys.argv[2]
    if what == "errors":
        result = errors(out)
    else:
        result = {"device_count": jax.device_count(), "meshes": {name: one_step(what, name, out) for name in MESHES}}
    (out / f"{what}.json").write_text(json.dumps(result, indent=1))
