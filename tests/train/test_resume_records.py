"""What a resumed run keeps of its calls: TIGER's previous best checkpoint, a failed call's history, the metrics
log, the run id under another time limit, and the code versions it ran under (each was lost or wrong before)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from scaling_rec.tiger_config import run_id
from scaling_rec.train import bookkeeping, engine, loop
from scaling_rec.train import tiger_loop as tiger
from scaling_rec.train.checkpoint import Checkpointer
from tests.tiger.test_loop import _config, _data_dir
from tests.train._tiny import tiny_config


@pytest.fixture(scope="module")
def tiger_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """The tiny TIGER data dir of tests/tiger/test_loop.py, with one content cache for the module."""
    root = tmp_path_factory.mktemp("tiger")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALING_REC_CACHE", str(root / "cache"))
        yield _data_dir(root / "data")


def _tiger_config(data_dir: pathlib.Path, **train: float):
    """test_loop's TIGER config, with one train step program for every test here (learning rate 0.05, one
    warm-up step: valid NDCG@10 .2406 at step 2, .2298 at step 3, .2509 at step 4)."""
    c = _config(data_dir)
    c.train.update(eval_every=2, learning_rate=0.05, warmup_steps=1, **train)
    return c


def _run_dir(workdir: pathlib.Path) -> pathlib.Path:
    (run_dir,) = (workdir / "runs").iterdir()
    return run_dir


def _kinds(run_dir: pathlib.Path) -> list[tuple]:
    """(step, kind) of each metrics.jsonl record, kind 'train' / 'valid' / 'test' (+ 'off_schedule')."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        kind = "train" if "loss" in r else "valid" if any(k.startswith("valid/") for k in r) else "test"
        out.append((r["step"], kind, *(("off_schedule",) if r.get("off_schedule") else ())))
    return out


def test_tiger_killed_between_a_new_best_and_its_checkpoint_keeps_the_previous_best(
        tiger_data: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """killed after best/4 was saved but before ckpt/4, the run resumes from ckpt/2, whose best is step 2:
    best/ kept one step, so best/2 was gone and a call ending before step 4 failed restoring it."""
    c = _tiger_config(tiger_data, num_steps=4)
    save = Checkpointer.save

    def killed_at_ckpt_4(self: Checkpointer, step: int, state, meta) -> None:
        if self.directory.name == "ckpt" and step == 4:
            raise RuntimeError("planted kill before ckpt/4")
        save(self, step, state, meta)

    monkeypatch.setattr(Checkpointer, "save", killed_at_ckpt_4)
    with pytest.raises(RuntimeError, match="planted kill"):
        tiger.train_and_evaluate(c, tmp_path)
    monkeypatch.setattr(Checkpointer, "save", save)
    run_dir = _run_dir(tmp_path)
    assert sorted(p.name for p in (run_dir / "ckpt").iterdir() if p.name.isdigit()) == ["2"]
    assert "4" in [p.name for p in (run_dir / "best").iterdir()], "step 4 is no new best: pick another lr"
    part = tiger.train_and_evaluate(c, tmp_path, max_steps=1)  # resumed at 2, stops at 3 (no new best)
    assert part["status"] == "partial" and part["steps"] == 3
    assert part["best"]["step"] == 2 and part["best"]["test"]


def test_a_run_failing_after_a_resume_reports_the_resumed_history(tmp_path: pathlib.Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """a call resumed from step 4 that fails in its first step writes a 'failed' result.json with the
    checkpoint's steps, curve and best step, not those of a fresh run (steps 0, no curve, no best)."""
    c = tiny_config(num_steps=8, eval_every=4, checkpoint_every=4)
    assert loop.train_and_evaluate(c, tmp_path, stop_after_steps=4)["status"] == "interrupted"

    def batch(self, step: int):
        raise RuntimeError(f"planted failure at step {step}")

    monkeypatch.setattr(loop.SequenceTask, "batch", batch)
    with pytest.raises(RuntimeError, match="planted failure at step 4"):
        loop.train_and_evaluate(c, tmp_path)
    result = json.loads((_run_dir(tmp_path) / "result.json").read_text())
    assert result["status"] == "failed" and result["steps"] == 4
    assert result["best_step"] == 4 and [p["step"] for p in result["curve"]] == [4]
    assert result["wall_time_s"] > 0 and result["examples_seen"] == 4 * c.train.batch_size


def test_tiger_resumed_metrics_log_holds_each_record_once(tiger_data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """a TIGER run resumed after a partial call keeps none of that call's off-schedule records, and one
    rerun after its end-of-run test (result.json not yet written) logs the test once, not twice."""
    c = _tiger_config(tiger_data, num_steps=2)
    assert tiger.train_and_evaluate(c, tmp_path, max_steps=1)["status"] == "partial"
    run_dir = _run_dir(tmp_path)
    assert _kinds(run_dir) == [(1, "train"), (1, "valid", "off_schedule"), (1, "test")]
    assert tiger.train_and_evaluate(c, tmp_path)["status"] == "ok"
    expected = [(1, "train"), (2, "train"), (2, "valid"), (2, "test")]
    assert _kinds(run_dir) == expected
    (run_dir / "result.json").unlink()  # as if killed after its end-of-run test, before result.json
    assert tiger.train_and_evaluate(c, tmp_path)["status"] == "ok"
    assert _kinds(run_dir) == expected


def test_tiger_time_limit_is_not_part_of_the_run_id(tiger_data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """a TIGER run left 'partial' by train.time_limit_s is resumed by a call with no limit, in the same run
    directory, instead of starting again under a new run id."""
    c = _tiger_config(tiger_data, num_steps=2, time_limit_s=1e-6)  # stops after its first step
    unlimited = _tiger_config(tiger_data, num_steps=2)
    assert run_id(c) == run_id(unlimited)
    part = tiger.train_and_evaluate(c, tmp_path)
    assert part["status"] == "partial" and part["steps"] == 1
    done = tiger.train_and_evaluate(unlimited, tmp_path)
    assert done["status"] == "ok" and done["run_id"] == part["run_id"]
    assert done["wall_time_s"] > done["call_wall_time_s"]  # the partial call's time is counted: a resume
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [part["run_id"]]


def test_a_run_resumed_under_other_code_lists_both_versions(tmp_path: pathlib.Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """a run trained partly under one commit and resumed under another names both in its result (with a
    warning), instead of only the last one."""
    first = {"git_commit": "a" * 40, "git_dirty": False}
    second = {"git_commit": "b" * 40, "git_dirty": True}
    version = {"now": first}
    monkeypatch.setattr(engine, "code_version", lambda: version["now"])
    monkeypatch.setattr(bookkeeping, "code_version", lambda: version["now"])
    c = tiny_config(num_steps=8, eval_every=4, checkpoint_every=4)
    assert loop.train_and_evaluate(c, tmp_path, stop_after_steps=4)["status"] == "interrupted"
    version["now"] = second
    result = loop.train_and_evaluate(c, tmp_path)
    assert result["status"] == "ok" and result["git_commit"] == "b" * 40
    assert result["code_versions"] == [first, second]
    assert "warning: resumed under bbbbbbbbbbbb (dirty=True)" in capsys.readouterr().err
