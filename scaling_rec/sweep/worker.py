"""A sweep's runs in the current process: the SLURM job's entry point and the finished-result test.

One run's machinery (compilation cache, run lock, trainer) is scaling_rec.train.run, shared by every
executor: inline calls `run_one`, local worker processes go through launch.train (which calls it), SLURM
jobs call `run_spec_file`, so all of them behave the same way.
"""

from __future__ import annotations

from typing import Any

from scaling_rec import config as config_lib
from scaling_rec.errors import RunBusyError
from scaling_rec.io import FINISHED
from scaling_rec.sweep.store import read_spec
from scaling_rec.train.run import enable_compilation_cache, run_one


def run_spec_file(spec_path: str, workdir: str, compilation_cache: str | None = None) -> dict[str, Any]:
    """Entry point of a SLURM job (submitit pickles this function): one spec file, one run.

    Multi-node jobs start jax.distributed from the SLURM environment (maybe_initialize); only
    process 0 takes the run lock. Returns {'status': ..., 'run_id': ...} (or 'busy').
    """
    from scaling_rec.parallel.distributed import maybe_initialize

    group = maybe_initialize()
    enable_compilation_cache(compilation_cache)
    config, _ = read_spec(spec_path)
    try:
        result = run_one(config, workdir, lock=group.process_id == 0)
    except RunBusyError as e:
        return {"status": "busy", "run_id": config_lib.run_id(config), "error": str(e)}
    return {k: result.get(k) for k in ("status", "run_id", "wall_time_s")}


def is_finished(result: dict[str, Any] | None) -> bool:
    return result is not None and result.get("status") in FINISHED
