"""Child of tests/train/test_streamed_processes.py: one process of a streamed run on localhost.

Usage: python _child_streamed_process.py WORKDIR PREPARED_DIR NUM_STEPS
The parent sets XLA_FLAGS (forced host devices), JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID. Prints one line `RESULT {json}`: the run's result, the loss of every step, and the
training examples this process read, in the order it read them (every PreparedExamples lookup).
"""

from __future__ import annotations

import json
import pathlib
import sys
import traceback

import jax

from scaling_rec.config import run_id
from scaling_rec.data.stream import PreparedExamples
from scaling_rec.parallel.distributed import maybe_initialize
from scaling_rec.train.loop import train_and_evaluate
from tests.parallel._child_common import find_run_dir, step_losses
from tests.train.test_streamed_processes import run_config

READS: list[int] = []
_getitem = PreparedExamples.__getitem__


def _recorded(self: PreparedExamples, i: int):
    READS.append(int(i))
    return _getitem(self, i)


def main(workdir: str, prepared_dir: str, num_steps: int) -> dict:
    maybe_initialize(initialization_timeout_s=60)
    PreparedExamples.__getitem__ = _recorded
    config = run_config(prepared_dir, num_steps)
    result = train_and_evaluate(config, workdir)
    return {"result": result, "losses": step_losses(find_run_dir(pathlib.Path(workdir), run_id(config))),
            "reads": list(READS), "process_index": jax.process_index(), "process_count": jax.process_count()}


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test with it
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    print("RESULT " + json.dumps(out, default=str), flush=True)
    if "error" not in out and jax.process_count() > 1:
        jax.distributed.shutdown()
