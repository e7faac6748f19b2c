"""Child of the multi-process and reshard tests: one `train_and_evaluate` call of the tiny synthetic run.

Usage: python _child_train.py WORKDIR FAMILY [STOP_AFTER_STEPS]
The parent sets XLA_FLAGS (forced host devices) and, for a multi-process run, JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID, which `maybe_initialize` reads. Prints one line `RESULT {json}`:
the run's result, the loss of every step in metrics.jsonl, what this process saw, and whether the
first training batch, placed by `place_batch` from this process's rows, equals the host batch.
"""

from __future__ import annotations

import json
import pathlib
import sys
import traceback

import jax
import numpy as np
from jax.experimental import multihost_utils

from scaling_rec.config import run_id
from scaling_rec.data.pipeline import TrainStream
from scaling_rec.parallel.distributed import maybe_initialize
from scaling_rec.parallel.mesh import make_mesh_from_config
from scaling_rec.train.inputs import prepare
from scaling_rec.train.loop import place_batch, train_and_evaluate
from tests.parallel._child_common import find_run_dir, step_losses, tiny_config


def placed_batch_check(config) -> dict:
    """The first training batch placed on the run's mesh: equal to the host batch? which token rows are local?"""
    inputs = prepare(config)
    stream = TrainStream(inputs.train, inputs.spec, seed=config.seed, time_origin=inputs.time_origin, prefetch=0)
    host = next(stream.iterate(0))
    placed = place_batch(host, make_mesh_from_config(config))
    gathered = multihost_utils.process_allgather(placed, tiled=True)
    equal = all(np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(gathered), strict=True))
    rows = sorted({(s.index[0].start, s.index[0].stop) for s in placed.item_ids_T.addressable_shards})
    return {"equal": equal, "tokens": int(placed.item_ids_T.shape[0]), "local_token_rows": [rows[0][0], rows[-1][1]],
            "tokens_spec": str(placed.item_ids_T.sharding.spec), "offsets_spec": str(placed.offsets_B1.sharding.spec)}


def main(workdir: str, family: str, stop_after: int | None) -> dict:
    maybe_initialize(initialization_timeout_s=60)
    config = tiny_config(family)
    result = train_and_evaluate(config, workdir, stop_after_steps=stop_after)
    return {
        "result": result,
        "losses": step_losses(find_run_dir(pathlib.Path(workdir), run_id(config))),
        "batch": placed_batch_check(config),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
    }


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test with it
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    print("RESULT " + json.dumps(out, default=str), flush=True)
    if "error" not in out and jax.process_count() > 1:
        jax.distributed.shutdown()
