r"""Train (or resume, or report the finished result of) one run.

    python -m launch.train --config=experiments/hstu/beauty.py:tiny --workdir=runs/ \
        [--config.model.num_blocks=4]

Every family (e.g. --config=experiments/wukong/frappe.py:wukong) trains on the one engine
(scaling_rec.train.engine) with its task, through scaling_rec.train.run.run_one (lock, compilation cache);
scaling_rec.train.tasks says which schema and trainer a family uses.
The run lives in <workdir>/<config.study>/runs/<run_id>/ (the same place a sweep puts it). Exit
status: 0 finished (ok, diverged or degenerate), 1 failed, 2 rejected input (flags, config, data, checkpoint: one line
says the cause and the fix; --verbose or SCALING_REC_TRACEBACK=1 adds the traceback; launch/_cli.py),
75 another process is running this run now. A rejected config leaves nothing on disk.
Multi-process: jax.distributed starts from --coordinator_address/--num_processes/--process_id, or
from JAX_* / SLURM environment variables (scaling_rec.parallel.distributed.maybe_initialize).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from launch import _cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file and preset: path.py:preset.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Results root; the run goes to <workdir>/<study>/runs/<run_id>/.")
_CACHE = flags.DEFINE_string("compilation_cache", "auto",
                             "JAX persistent compilation cache dir: 'auto' = <workdir>/.jax_cache, 'none' = off.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", True, "Start jax.distributed when several processes are asked "
                                 "for (flags, JAX_* or SLURM env); a no-op for one process.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


def summary(result: dict[str, Any], run_dir: str, call_s: float | None = None) -> str:
    """A few human-readable lines about a result.json; call_s: this call's wall time (a finished run found
    again takes seconds, while result.json's elapsed_s is the call that trained it).

    The test line names the step its metrics are of: the best validation step's, or, for a family that tests
    at the end (TIGER: result['best'] holds the best step's test), the last step's.
    """
    ev = result.get("eval", {})
    metrics = " ".join(f"{k.split('/', 1)[1]}={v:.4f}" for k, v in sorted(ev.items())
                       if k.startswith("test/") and not k.endswith(("_se", "_sumsq", "num_examples")))
    planned, spent = result.get("flops_planned", 0.0), result.get("flops_spent", 0.0)
    return "\n".join([
        f"run {result.get('run_id')} {result.get('status')}: {result.get('family')} on {result.get('dataset')}, "
        f"N_dense={result.get('n_dense', 0):,} N_emb={result.get('n_emb', 0):,}",
        f"  C planned {planned:.3g} FLOPs, spent {spent:.3g} ({spent / max(planned, 1e-30):.3f}x); "
        f"{result.get('steps')} steps, {result.get('epochs', 0):.2f} epochs, "
        f"{result.get('examples_seen', 0):,.0f} examples",
        (f"  test (last step {result.get('steps')}; best valid step {result['best'].get('step')} in 'best'): "
         if isinstance(result.get("best"), dict) else f"  test (best valid step {result.get('best_step')}): ")
        + (metrics or "-"),
        f"  wall {result.get('wall_time_s', 0):.1f} s training (all calls), "
        f"{result.get('elapsed_s', 0) if call_s is None else call_s:.1f} s this call (setup included) "
        f"on {result.get('num_devices')}x {result.get('device_kind')}",
        f"  {run_dir}",
    ] + [f"  {k.split('_')[0]}: {result[k]}" for k in ("degenerate_reason", "error") if result.get(k)])


def main(argv: list[str]) -> int:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    process_id = 0
    if _DISTRIBUTED.value:
        from scaling_rec.parallel.distributed import maybe_initialize

        process_id = maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value).process_id
    from scaling_rec.errors import RunBusyError
    from scaling_rec.io import FINISHED
    from scaling_rec.schema import run_id
    from scaling_rec.train.run import EXIT_BUSY, cache_dir, enable_compilation_cache, run_one, study_root
    from scaling_rec.train.tasks import schema_for

    config = _CONFIG.value
    schema_for(config.model.family).validate(config)  # before the cache directory and the lock exist
    run_dir = study_root(_WORKDIR.value, config) / "runs" / run_id(config)  # checks data.data_dir
    enable_compilation_cache(cache_dir(_WORKDIR.value, _CACHE.value))
    t0 = time.perf_counter()
    try:
        result = run_one(config, _WORKDIR.value, lock=process_id == 0)  # one lock per run, not per process
    except RunBusyError as e:
        print(f"busy: {e}", file=sys.stderr)
        return EXIT_BUSY
    print(summary(result, str(run_dir), time.perf_counter() - t0), flush=True)
    return 0 if result.get("status") in FINISHED else 1


if __name__ == "__main__":
    _cli.run(main)
