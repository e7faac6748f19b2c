"""The training engine (scaling_rec.train.engine) and the family table (scaling_rec.train.tasks)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from scaling_rec import families
from scaling_rec.train import engine, tasks
from tests.golden import runs

TASKS = {"dcnv2": "CTRTask", "tiger": "TigerTask", "sasrec": "SequenceTask"}


@pytest.mark.parametrize("family", sorted(TASKS))
def test_an_exception_mid_run_writes_a_failed_result(family: str, tmp_path: pathlib.Path, monkeypatch) -> None:
    """Every family's run that raises after its run directory exists leaves result.json with status 'failed',
    the error, and the fields known so far; the exception still propagates."""
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    config = runs.config(family, tmp_path)
    task_cls = getattr(tasks.trainer_for(family), TASKS[family])

    def batch(self, step: int):
        if step == 2:
            raise RuntimeError("planted failure at step 2")
        return original(self, step)

    original = task_cls.batch
    monkeypatch.setattr(task_cls, "batch", batch)
    with pytest.raises(RuntimeError, match="planted failure"):
        tasks.train_one(config, tmp_path / "study")
    (path,) = (tmp_path / "study" / "runs").glob("*/result.json")
    result = json.loads(path.read_text())
    assert result["status"] == "failed" and "planted failure at step 2" in result["error"]
    assert result["family"] == family and result["run_id"] == path.parent.name
    assert result["steps"] == 2 and result["n_dense"] > 0 and result["total_steps"] == config.train.num_steps


def test_every_family_has_a_schema_and_a_trainer() -> None:
    for family in families.SEQUENCE_FAMILIES + families.CTR_FAMILIES + families.TIGER_FAMILIES:
        schema = tasks.schema_for(family)
        assert family in schema.FAMILIES
        assert callable(tasks.trainer_for(family).train_and_evaluate)
    assert tasks.schema_for("no_such_family").__name__ == "scaling_rec.config"  # which then rejects it by name


def test_uniform_plan_accounts_every_step() -> None:
    plan = engine.Plan.uniform(5, 2.5, 2, batch_size=4, flops_per_example=10.0)
    assert plan.spent(3) == {"examples_seen": 12.0, "flops_spent": 120.0}
    assert np.array_equal(plan.flops_per_step, np.full(5, 40.0))


def test_code_version_is_read_as_the_run_starts(tmp_path: pathlib.Path, monkeypatch) -> None:
    """The result's git_commit / git_dirty describe the tree as the run starts: the tree edited while the run
    trains (here from its second step) does not reach its result. The reader is cached per process, as
    provenance.code_version is, so the first read wins."""
    import functools

    from scaling_rec.train import bookkeeping

    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    config = runs.config("dcnv2", tmp_path)
    task_cls = tasks.trainer_for("dcnv2").CTRTask
    tree = {"dirty": False}

    @functools.cache
    def version():
        return {"git_commit": "abc123", "git_dirty": tree["dirty"]}

    def batch(self, step: int):
        tree["dirty"] = step >= 1
        return original(self, step)

    original = task_cls.batch
    monkeypatch.setattr(task_cls, "batch", batch)
    monkeypatch.setattr(engine, "code_version", version)
    monkeypatch.setattr(bookkeeping, "code_version", version)
    result = tasks.train_one(config, tmp_path / "study")
    assert result["status"] == "ok" and tree["dirty"]
    assert result["git_commit"] == "abc123" and result["git_dirty"] is False
