"""The runner with the inline executor: finished runs are never rerun, a diverged run is recorded
and the sweep goes on, FLOPs planned ≈ spent, the overhead line is printed."""

from __future__ import annotations

import io
import math

import pytest

from scaling_rec.sweep.executors import InlineExecutor
from scaling_rec.sweep.runner import run_sweep
from scaling_rec.sweep.spec import load_sweep
from scaling_rec.sweep.store import Store, study_root
from tests.sweep.helpers import TINY


def _sweep(preset: str, workdir, **kw):
    from scaling_rec.sweep.spec import load_experiment

    base = load_experiment(TINY).get_config(preset)
    for k, v in kw.items():
        section, field = k.split("__")
        base[section][field] = v
    specs = load_sweep(f"{TINY}:{preset}", base)
    store = Store(study_root(workdir, base))
    out = io.StringIO()
    report = run_sweep(specs, store, InlineExecutor(workdir), out=out, poll_s=0.01)
    return specs, store, report, out.getvalue()


@pytest.fixture(scope="module")
def diverge_sweep(tmp_path_factory, jax_cache):
    workdir = tmp_path_factory.mktemp("diverge")
    return (workdir, *_sweep("diverge", workdir))


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(diverge_sweep):
    _, specs, store, report, out = diverge_sweep
    assert [r.state for r in report.runs] == ["ok", "diverged", "ok"]
    bad = store.read_result(specs[1].run_id)
    assert bad["status"] == "diverged" and math.isnan(bad["final_train_loss"])
    assert store.read_result(specs[2].run_id)["steps"] == 5
    assert "diverged in" in out and "2/3 done" in out and "3/3 done" in out
    assert store.read_status()[specs[1].run_id]["state"] == "diverged"


def test_the_summary_and_overhead_are_printed(diverge_sweep):
    _, specs, _, report, out = diverge_sweep
    assert all(s.run_id in out for s in specs)
    assert "overhead: " in out and "% on top of the runs' own time: 1 slot(s)" in out
    assert report.executed == 3 and 0.0 <= report.overhead_fraction < 1.0
    assert report.run_wall_s > 0 and report.wall_s >= report.run_wall_s


def test_finished_runs_are_never_rerun(diverge_sweep):
    workdir, specs, store, _, _ = diverge_sweep
    before = {s.run_id: (store.run_dir(s.run_id) / "result.json").read_bytes() for s in specs}
    mtimes = {s.run_id: (store.run_dir(s.run_id) / "result.json").stat().st_mtime_ns for s in specs}
    _, _, report, out = _sweep("diverge", workdir)
    assert [r.state for r in report.runs] == ["skipped"] * 3
    assert report.executed == 0 and "3 finished already (skipped)" in out
    for s in specs:
        assert (store.run_dir(s.run_id) / "result.json").read_bytes() == before[s.run_id]
        assert (store.run_dir(s.run_id) / "result.json").stat().st_mtime_ns == mtimes[s.run_id]


def test_flops_planned_are_spent_within_one_step(tmp_path, jax_cache):
    specs, store, report, _ = _sweep("budgets", tmp_path)
    assert [r.state for r in report.runs] == ["ok", "ok"]
    for s in specs:
        r = store.read_result(s.run_id)
        per_step = r["flops_spent"] / r["steps"]
        assert r["flops_planned"] == s.budget
        assert r["flops_planned"] <= r["flops_spent"] < r["flops_planned"] + 1.5 * per_step


def test_a_partial_run_is_reported_as_stopped_at_its_time_limit(tmp_path):
    """A run whose result.json says 'partial' (train.time_limit_s) is not 'finished' and stays failed for the
    sweep's exit status, but its record says what happened (it read 'no result.json written')."""
    from scaling_rec.io import atomic_write_json
    from scaling_rec.sweep.executors import Outcome, _DoneJob
    from scaling_rec.sweep.spec import expand
    from tests.sweep.tiny_study import get_config

    specs = expand(get_config(), [{"train.num_steps": 3}])
    store = Store(tmp_path)

    class StoppedAtLimit:
        name, slots = "stub", 1

        def submit(self, spec):
            atomic_write_json(store.run_dir(spec.run_id) / "result.json",
                              {"status": "partial", "run_id": spec.run_id, "steps": 1, "total_steps": 3})
            return _DoneJob(spec.run_id, Outcome("finished"))

        def close(self):
            pass

    report = run_sweep(specs, store, StoppedAtLimit(), out=io.StringIO(), poll_s=0.01)
    (run,) = report.runs
    assert run.state == "failed" and run.error.startswith("partial: stopped at its time limit at step 1 of 3")
    assert store.read_status()[run.spec.run_id]["error"] == run.error
