"""The slurm executor's code path through submitit's debug (in-process) and local (subprocess) clusters."""

from __future__ import annotations

import io

import pytest

from scaling_rec.sweep.executors import make_executor, slurm_parameters
from scaling_rec.sweep.runner import run_sweep
from scaling_rec.sweep.spec import load_experiment, load_sweep
from scaling_rec.sweep.store import Store, study_root
from tests.sweep.helpers import TINY


@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_slurm_executor_runs_through_submitit(cluster, tmp_path, jax_cache, monkeypatch):
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")
    base = load_experiment(TINY).get_config("one")
    specs = load_sweep(f"{TINY}:one", base)
    store = Store(study_root(tmp_path, base))
    params = slurm_parameters(name="tiny", timeout_min=5, partition="ignored-off-slurm", nodes=1, gpus_per_node=0,
                              cpus_per_task=1, mem_gb=None)
    executor = make_executor("slurm", tmp_path, store, workers=2, compilation_cache=str(jax_cache),
                             slurm_cluster=cluster, slurm_params=params)
    out = io.StringIO()
    report = run_sweep(specs, store, executor, out=out, poll_s=0.2)
    assert [r.state for r in report.runs] == ["ok"], out.getvalue()
    assert store.read_result(specs[0].run_id)["steps"] == 2
    assert list((store.sweep_dir / "slurm").iterdir()), "submitit wrote no job folder"
    again = run_sweep(specs, store, executor, out=io.StringIO())
    assert [r.state for r in again.runs] == ["skipped"]
