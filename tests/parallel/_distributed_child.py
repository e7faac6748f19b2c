"""Child of the 2-process test: one of two processes x 4 host CPU devices, joined by gloo.

The parent sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID and XLA_FLAGS, and passes a
file path: the child writes there one JSON object, what this process saw of the cross-process
collectives, or the error. Not stdout: gloo's C++ logging writes to the same descriptor from its own
threads and was seen to land inside the result line. After a barrier the child leaves with os._exit:
a child was seen to hang for over 120 s after printing its result, in the exit-time teardown (jaxlib
0.10.2, localhost gloo), which is not what this test is about. Before these two changes the test failed
in 3 of 11 runs here; after them, 0 of 15.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec

from scaling_rec.errors import MeshError
from scaling_rec.parallel.distributed import maybe_initialize, process_shard
from scaling_rec.parallel.mesh import make_mesh
from scaling_rec.parallel.sharding import replicated, shard_batch


def run() -> dict:
    group = maybe_initialize(initialization_timeout_s=60)
    pid = jax.process_index()
    mesh = make_mesh(-1, 1, 1)
    rows = process_shard(8, pid, jax.process_count())
    local_x = np.arange(8, dtype=np.float32)[rows] + 1.0  # process 0: 1..4, process 1: 5..8
    x = shard_batch({"x": local_x}, mesh)["x"]
    total = jax.jit(jnp.sum, out_shardings=replicated(mesh))(x)
    psum = jax.jit(
        jax.shard_map(
            lambda v: jax.lax.psum(v, ("data", "fsdp")),
            mesh=mesh,
            in_specs=PartitionSpec(("data", "fsdp")),
            out_specs=PartitionSpec(),
        ),
        out_shardings=replicated(mesh),
    )(x)
    gathered = multihost_utils.process_allgather(np.asarray([pid, pid * 10]), tiled=False)
    offsets = shard_batch({"o": np.array([0, 2, 5], np.int32)}, mesh)["o"]  # 3 rows: replicated, same everywhere
    try:  # each process's own 3 rows: 6 do not split over 8 devices, and they differ
        shard_batch({"x": np.arange(3, dtype=np.float32) + 10 * pid}, mesh)
        uneven = "no error"
    except MeshError as e:
        uneven = str(e)
    multihost_utils.sync_global_devices("results computed")  # neither process leaves while the other needs it
    return {
        "group": [group.coordinator_address, group.num_processes, group.process_id],
        "process_index": pid,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "global_shape": list(x.shape),
        "sum": float(total),
        "psum": np.asarray(psum.addressable_shards[0].data).tolist(),
        "allgather": np.asarray(gathered).tolist(),
        "collectives": jax.config.jax_cpu_collectives_implementation,
        "replicated_offsets": np.asarray(offsets.addressable_shards[0].data).tolist(),
        "uneven_rows": uneven,
    }


if __name__ == "__main__":
    try:
        result = run()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which decides
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    path = pathlib.Path(sys.argv[1])
    path.with_suffix(".tmp").write_text(json.dumps(result))
    path.with_suffix(".tmp").replace(path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
    if "error" not in result:
        jax.distributed.shutdown()
