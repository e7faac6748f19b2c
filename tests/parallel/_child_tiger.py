"""Child of test_tiger_sharded: TIGER's real train step on 8 forced host CPU devices.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=8 python _child_tiger.py OUT_DIR WHAT [WHAT ...]
with WHAT in encdec, deconly, errors, loop.
For the architecture and each mesh ((1,1,1) on one device, data=8, fsdp=8, data=2 x fsdp=2 x tensor=2) one call of
the engine's train step on `tiger_loop.make_loss` (teacher forcing, dropout keyed by the step) on the same batch of
16 (history, next item) pairs of synthetic sequences with random semantic IDs, placed by `place_batch` as the loop
does, with an optimiser that stores the gradients in its state. Writes OUT_DIR/grads_<arch>_<mesh>.npz and prints
`RESULT {json}` ({what: losses, shardings}). With `errors`: the config errors of `tiger_loop.train_and_evaluate` on
these 8 devices and the compilations they triggered. With `loop`: a whole run of `train_and_evaluate`
(`loop_config`: tiny Beauty-like files, 2 steps per call, the best validation checkpoint restored onto the mesh and
tested) on data=2 x fsdp=2 x tensor=2.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec.data.splits import leave_one_out
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.models.rqvae import semantic_ids
from scaling_rec.models.tiger import Tiger, model_spec
from scaling_rec.parallel.mesh import make_mesh
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import create_sharded, place_batch, replicated, shard_batch
from scaling_rec.train import tiger_loop
from scaling_rec.train.engine import make_train_step
from scaling_rec.train.step import TrainState
from tests.parallel._child_common import TIGER_ITEMS, config_error, record_compiles, tiny_tiger_config
from tests.parallel._child_models import _flat, _init_capture, _shards, capture_gradients

jax.config.update("jax_numpy_rank_promotion", "raise")

MESHES = {"ref": (1, 1, 1), "data8": (8, 1, 1), "fsdp8": (1, 8, 1), "d2f2t2": (2, 2, 2)}
NUM_USERS = 32
TABLE = "['embed']['table'].value"


def host_batch(config: ml_collections.ConfigDict) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[int, ...]]:
    """(the loop's first batch: `train_batch` of 16 pairs, codes int32 [items + 1, L], vocab sizes), from
    synthetic sequences (leave-one-out, every training prefix a pair) and random semantic IDs."""
    split = leave_one_out(synthetic_sequences(num_users=NUM_USERS, num_items=TIGER_ITEMS, seed=config.seed))
    i = config.ids
    ids = semantic_ids(np.zeros((TIGER_ITEMS + 1, 1), np.float32), i.method, levels=i.levels,
                       codebook_size=i.codebook_size, seed=config.seed)
    examples = tiger_loop.make_examples(config, ids, *tiger_loop.training_pairs(split.train, config.data.max_items))
    idx = np.random.default_rng([config.seed, 0]).permutation(len(examples.targets_B))[: config.train.batch_size]
    return tiger_loop.train_batch(examples, idx), np.maximum(ids.codes, 0), ids.vocab_sizes


def one_step(arch: str, mesh_name: str, out_dir: pathlib.Path) -> dict:
    """Loss, gradients and shardings of one real TIGER train step on one mesh."""
    config = tiny_tiger_config(arch)
    sizes = MESHES[mesh_name]
    mesh = make_mesh(*sizes, devices=jax.devices()[: int(np.prod(sizes))])
    batch_np, codes, vocab_sizes = host_batch(config)
    spec = model_spec(config)
    model = create_sharded(lambda: Tiger(spec, vocab_sizes, nnx.Rngs(params=config.seed)), mesh, rules_for(config))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    capture = capture_gradients()
    state = TrainState(params=params, opt_state=_init_capture(capture, params),
                       step=jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh)), rest=rest)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(make_train_step(tiger_loop.make_loss(graphdef, codes), capture, config.seed),
                   in_shardings=(shardings, None), out_shardings=(shardings, None))
    with jax.set_mesh(mesh):
        batch = place_batch(batch_np, mesh)
        new_state, metrics = step(state, batch)
    grads, flat_params = _flat(new_state.opt_state), _flat(params)
    np.savez(out_dir / f"grads_{arch}_{mesh_name}.npz", **{k: np.asarray(v) for k, v in grads.items()})
    placed_like_shard_batch = all(
        a.sharding == b.sharding and np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(shard_batch(batch_np, mesh)), strict=True)
    )
    return {
        "loss": float(metrics["loss"]),
        "specs": {k: str(v.sharding.spec) for k, v in flat_params.items()},
        "param_shards": {k: [list(s) for s in _shards(v)] for k, v in flat_params.items()},
        "grad_shards": {k: [list(s) for s in _shards(v)] for k, v in grads.items()},
        "num_devices": len(flat_params[TABLE].sharding.device_set),
        "batch_specs": {k: str(v.sharding.spec) for k, v in batch.items()},
        "batch_rows": int(batch["targets_B"].shape[0]),
        "placed_like_shard_batch": placed_like_shard_batch,
        "params_unchanged": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                                zip(jax.tree.leaves(params), jax.tree.leaves(new_state.params), strict=True)),
    }


def errors(out_dir: pathlib.Path) -> dict:
    """Mesh larger than the devices, and a batch of 12 on a data-parallel size of 8."""
    record_compiles()
    return {
        "device_count": jax.device_count(),
        "mesh_mismatch": config_error(tiger_loop.train_and_evaluate, tiny_tiger_config(), out_dir / "w_mesh",
                                      mesh__data=3),
        "batch_not_divisible": config_error(tiger_loop.train_and_evaluate, tiny_tiger_config(),
                                            out_dir / "w_batch", mesh__data=8, train__batch_size=12),
    }


def loop_config(data_root: pathlib.Path) -> ml_collections.ConfigDict:
    """The tiny end-to-end TIGER config of tests/tiger/test_loop.py on files written under `data_root`, 4 steps
    in calls of 2, validated every 2 (on one device: the reference of test_whole_run_equals_one_device)."""
    from tests.tiger.test_loop import _config, _data_dir

    config = _config(_data_dir(data_root))
    config.train.update(num_steps=4, log_every=2, eval_every=2, steps_per_call=2, learning_rate=0.05)
    return config


def whole_run(out_dir: pathlib.Path) -> dict:
    """train_and_evaluate of `loop_config` on data=2 x fsdp=2 x tensor=2."""
    os.environ["SCALING_REC_CACHE"] = str(out_dir / "cache")
    config = loop_config(out_dir / "loop_data")
    config.mesh.update(data=2, fsdp=2, tensor=2)
    r = tiger_loop.train_and_evaluate(config, out_dir / "loop_run")
    return {k: r[k] for k in ("status", "steps", "num_devices", "final_train_loss", "eval", "best", "curve")}


def run(what: str, out_dir: pathlib.Path) -> dict:
    """The results of one architecture on every mesh, of the config errors, or of a whole run."""
    if what == "errors":
        return errors(out_dir)
    if what == "loop":
        return whole_run(out_dir)
    return {"device_count": jax.device_count(), "meshes": {name: one_step(what, name, out_dir) for name in MESHES}}


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    print("RESULT " + json.dumps({what: run(what, out) for what in sys.argv[2:]}))
