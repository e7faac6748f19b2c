"""Running one run of a sweep in the current process: compilation cache, run lock, train loop.

Shared by every executor (inline calls `run_one`; local worker processes go through launch.train,
which calls `run_one`; SLURM jobs call `run_spec_file`), so all of them behave the same way.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import ml_collections

from scaling_rec import config as config_lib
from scaling_rec.errors import RunBusyError
from scaling_rec.sweep.spec import schema
from scaling_rec.sweep.store import FINISHED, Store, read_spec, study_root
from scaling_rec.train.tasks import train_one

EXIT_BUSY = 75  # EX_TEMPFAIL: another process is running this run; try again later.


def enable_compilation_cache(path: str | os.PathLike | None) -> None:
    """Turns on JAX's persistent compilation cache in `path` (None or '' leaves it off).

    Runs of equal shapes (the same model at several budgets of an IsoFLOP grid) then share their
    compiled train/eval steps across runs and processes: measured here, a tiny run's setup fell
    from 18.5 s to 2.8 s.
    """
    if not path:
        return
    pathlib.Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def cache_dir(workdir: str | os.PathLike, value: str) -> str | None:
    """The directory a --compilation_cache flag value means: 'auto' = <workdir>/.jax_cache, 'none' = off."""
    if value == "none":
        return None
    return str(pathlib.Path(workdir) / ".jax_cache") if value == "auto" else value


def run_one(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, lock: bool = True) -> dict[str, Any]:
    """Runs (resumes, or returns the finished result of) `config` under `<workdir>/<study>/`.

    The trainer follows the family (scaling_rec.train.tasks.train_one). Holds the run's lock while
    training (RunBusyError when another live process holds it), so two launches of the same run never train
    it at once.
    """
    schema(config.model.family).validate(config)  # a rejected config takes no lock (and writes nothing)
    root = study_root(workdir, config)
    if not lock:
        return train_one(config, root)
    with Store(root).lock(config_lib.run_id(config)):
        return train_one(config, root)


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
