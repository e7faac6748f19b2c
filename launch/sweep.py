r"""Run a study's sweep, then analyse it.

    python -m launch.sweep --config=experiments/hstu/isoflop.py:quick --workdir=runs/ \
        --executor=inline|local|slurm [--workers=2] [--config.data.name=amazon-toys] [--noanalyze]

The experiment file's get_config(preset) is the base config (--config.* overrides apply to it) and
its get_sweep(preset) declares the runs (scaling_rec/sweep/spec.py); an optional
get_analysis(preset) -> {flag: value} passes flags to launch.analyze (e.g. the metric to fit). Runs go to
<workdir>/<study>/runs/<run_id>/; finished ones are skipped, unfinished ones resume. After the runs,
launch.analyze writes the report to <workdir>/<study>/report (unless --noanalyze).
Exit status: 0 all runs finished (ok, diverged or degenerate) and the analysis succeeded, 1 otherwise, 2 rejected input
(flags, config, data: one line says the cause and the fix; --verbose or SCALING_REC_TRACEBACK=1 adds the
traceback; launch/_cli.py).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from absl import flags, logging
from ml_collections import config_flags

from launch import _cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file and preset: path.py:preset.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Results root; the study lives in <workdir>/<study>/.")
_EXECUTOR = flags.DEFINE_enum("executor", "inline", ["inline", "local", "slurm"], "Where runs execute.")
_WORKERS = flags.DEFINE_integer("workers", 2, "local: worker processes; slurm: jobs in flight at once.")
_ANALYZE = flags.DEFINE_bool("analyze", True, "Run launch.analyze on the study after the runs.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the runs (and whether they are finished) and exit.")
_CACHE = flags.DEFINE_string("compilation_cache", "auto",
                             "JAX persistent compilation cache: 'auto' = <workdir>/.jax_cache, 'none' = off.")
_SLURM_CLUSTER = flags.DEFINE_enum("slurm_cluster", None, ["slurm", "local", "debug"],
                                   "submitit cluster (default: detect; local/debug run without SLURM).")
_PARTITION = flags.DEFINE_string("slurm_partition", None, "SLURM partition.")
_TIMEOUT = flags.DEFINE_integer("slurm_timeout_min", 240, "SLURM time limit per run, minutes.")
_NODES = flags.DEFINE_integer("slurm_nodes", 1, "Nodes per run (> 1: multi-node jax.distributed).")
_GPUS = flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per node (one process per node drives them all).")
_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", 8, "CPUs per node (one task per node).")
_MEM = flags.DEFINE_integer("slurm_mem_gb", 0, "Memory per node in GB (0: partition default).")
flags.mark_flags_as_required(["config", "workdir"])


def analysis_flags(config_arg: str) -> list[str]:
    """launch.analyze flags the experiment file asks for: optional `get_analysis(preset) -> dict`."""
    from scaling_rec.sweep.spec import load_analysis

    return [f"--{k}={v}" for k, v in load_analysis(config_arg).items()]


def analyze(study_dir: pathlib.Path, extra: list[str]) -> int:
    """`python -m launch.analyze --workdir=<study> --out=<study>/report [extra]`; its exit status."""
    cmd = [sys.executable, "-m", "launch.analyze", f"--workdir={study_dir}", f"--out={study_dir / 'report'}", *extra]
    print("analysis: " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.call(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(pathlib.Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))})


def main(argv: list[str]) -> int:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    from scaling_rec.sweep import executors
    from scaling_rec.sweep.runner import run_sweep
    from scaling_rec.sweep.spec import load_sweep
    from scaling_rec.sweep.store import Store
    from scaling_rec.train.run import cache_dir, enable_compilation_cache, study_root

    config_arg = flags.FLAGS["config"].config_filename
    specs = load_sweep(config_arg, _CONFIG.value)
    workdir = pathlib.Path(_WORKDIR.value).resolve()
    store = Store(study_root(workdir, _CONFIG.value))
    if _DRY_RUN.value:
        for s in specs:
            print(f"{s.run_id}  {store.status(s.run_id):8s}  {s.family:6s} {s.size or '-':10s} "
                  f"C={s.budget:.3g}" if s.budget else f"{s.run_id}  {store.status(s.run_id):8s}  {s.size}")
        return 0
    cache = cache_dir(str(workdir), _CACHE.value)
    if _EXECUTOR.value == "inline":
        enable_compilation_cache(cache)
    slurm_params = executors.slurm_parameters(
        name=_CONFIG.value.study, timeout_min=_TIMEOUT.value, partition=_PARTITION.value, nodes=_NODES.value,
        gpus_per_node=_GPUS.value, cpus_per_task=_CPUS.value, mem_gb=_MEM.value or None)
    executor = executors.make_executor(_EXECUTOR.value, workdir, store, workers=_WORKERS.value,
                                       compilation_cache=cache, slurm_cluster=_SLURM_CLUSTER.value,
                                       slurm_params=slurm_params)
    report = run_sweep(specs, store, executor, source=config_arg)
    status = 1 if report.failed else 0
    if _ANALYZE.value:
        if report.failed:
            print(f"{len(report.failed)} run(s) failed; analysing the finished ones.", file=sys.stderr)
        status = max(status, 1 if analyze(store.root, analysis_flags(config_arg)) else 0)
    return status


if __name__ == "__main__":
    _cli.run(main)
