"""The step loops' shared bookkeeping: best tracking with patience, result fields, checkpoint and stop decisions."""

from __future__ import annotations

import json
import math
from typing import Any

import jax
import ml_collections

from scaling_rec.train import bookkeeping


class FakeCheckpointer:
    """Records the steps saved and whether it was closed."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, float]] = []
        self.closed = False

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self.saved.append((step, meta["wall_time_s"]))

    def close(self) -> None:
        self.closed = True


class FakeLogger:
    """Records the summary and whether it was closed; `records` is what a checkpoint saves as log_records."""

    def __init__(self) -> None:
        self.summaries: list[dict[str, Any]] = []
        self.closed = False
        self.records = 7

    def summary(self, values: dict[str, Any]) -> None:
        self.summaries.append(values)

    def close(self) -> None:
        self.closed = True


def _meta() -> dict[str, Any]:
    return {"best": None, "evals_since_best": 0, "wall_time_s": 0.0, "last_valid": None}


def _book(patience: int = 0, start: int = 0, stop_after_steps: int | None = None) -> bookkeeping.Bookkeeper:
    return bookkeeping.Bookkeeper("rid", FakeCheckpointer(), FakeLogger(), _meta(), patience, start, stop_after_steps)


def test_record_eval_tracks_the_best_point_and_evaluates_test_only_on_improvement():
    meta, tests = _meta(), []

    def test() -> dict[str, float]:
        tests.append(1)
        return {"auc": 0.6}

    assert bookkeeping.best_valid(meta, "auc") is None
    assert bookkeeping.record_eval(meta, 4, {"auc": 0.7}, True, test) == {"valid/auc": 0.7, "test/auc": 0.6}
    assert bookkeeping.record_eval(meta, 8, {"auc": 0.65}, False, test) == {"valid/auc": 0.65}
    assert len(tests) == 1
    assert meta["best"] == {"step": 4, "valid": {"auc": 0.7}, "test": {"auc": 0.6}}
    assert meta["last_valid"] == {"auc": 0.65} and meta["evals_since_best"] == 1
    assert bookkeeping.best_valid(meta, "auc") == 0.7
    assert bookkeeping.patience_exhausted(meta, 1) and not bookkeeping.patience_exhausted(meta, 2)
    assert not bookkeeping.patience_exhausted(meta, 0)


def test_flatten_best_names_valid_and_test_metrics():
    best = {"step": 3, "valid": {"auc": 0.7, "n": 10}, "test": {"auc": 0.6}}
    assert bookkeeping.flatten_best(best) == {"valid/auc": 0.7, "valid/n": 10.0, "test/auc": 0.6}
    assert bookkeeping.flatten_best(None) == {}


def test_result_fields_provenance_and_times():
    fields = {**bookkeeping.run_provenance(), **bookkeeping.run_times(2, 0.0)}
    assert {"device_kind", "num_devices", "git_commit", "git_dirty", "wall_time_s", "elapsed_s"} <= set(fields)
    assert fields["num_devices"] == jax.device_count() and fields["wall_time_s"] == 2.0
    assert fields["elapsed_s"] > 0


def test_after_step_checkpoints_then_decides():
    book = _book(patience=1)
    assert book.after_step(4, None, save=True, evaluated=True) == "continue"
    assert [s for s, _ in book.ckpt.saved] == [4] and book.ckpt.saved[0][1] > 0
    assert book.meta["log_records"] == 7  # the log's length at the save: a resume keeps those records
    book.meta["evals_since_best"] = 1
    assert book.after_step(5, None, save=False, evaluated=False) == "continue"
    assert book.after_step(8, None, save=True, evaluated=True) == "early_stop"
    assert [s for s, _ in book.ckpt.saved] == [4, 8] and not book.logger.closed


def test_after_step_interrupts_after_stop_after_steps_of_this_call():
    book = _book(start=10, stop_after_steps=3)
    assert book.after_step(12, None, save=False, evaluated=False) == "continue"
    assert book.after_step(13, None, save=False, evaluated=False) == "interrupt"
    assert [s for s, _ in book.ckpt.saved] == [13] and book.logger.closed
    assert book.interrupted(13) == {"status": "interrupted", "run_id": "rid", "step": 13}


def test_interrupt_on_a_saved_step_saves_it_once():
    """orbax raises StepAlreadyExistsError on a second save of one step (eval and interrupt at once)."""
    book = _book(start=0, stop_after_steps=4)
    assert book.after_step(4, None, save=True, evaluated=True) == "interrupt"
    assert [s for s, _ in book.ckpt.saved] == [4] and book.logger.closed


def test_diverged_on_any_non_finite_loss():
    book = _book()
    assert not book.diverged(4, [1.0, 0.5])
    assert book.diverged(4, [1.0, math.nan])
    assert book.diverged(4, [math.inf])


def test_open_run_dir_and_finish_write_the_run_files(tmp_path):
    run_dir = tmp_path / "runs" / "rid"
    assert bookkeeping.open_run_dir(run_dir, ml_collections.ConfigDict({"seed": 0}))
    assert json.loads((run_dir / "config.json").read_text()) == {"seed": 0}
    book = _book()
    result = {"status": "ok", "steps": 3, "eval": {}}
    book.finish(result, run_dir, main=True)
    assert book.logger.summaries == [{"status": "ok", "steps": 3}] and book.logger.closed and book.ckpt.closed
    assert json.loads((run_dir / "result.json").read_text()) == result


def test_opening_a_run_dir_deletes_the_temporary_files_of_a_killed_writer(tmp_path):
    """A worker SIGKILLed between writing result.json's temporary file and renaming it leaves that file; the
    next owner of the run deletes it (tests/sweep/test_kill_resume.py met one when the kill landed there)."""
    run_dir = tmp_path / "runs" / "rid"
    run_dir.mkdir(parents=True)
    (run_dir / ".result.json.x1y2z3.tmp").write_text('{"status": "o')
    (run_dir / "metrics.jsonl").write_text("{}\n")
    assert bookkeeping.open_run_dir(run_dir, ml_collections.ConfigDict({"seed": 0}))
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.jsonl"]


def test_the_wandb_summary_is_the_results_best_step_and_status():
    """W&B's summary keeps each metric's last logged value: a run whose best validation was not its last
    evaluation showed the last 'valid/ndcg@10' beside the best step's 'test/ndcg@10', and no status."""
    result = {"status": "degenerate", "degenerate_reason": "constant scores", "run_id": "r", "steps": 9,
              "best_step": 6, "git_dirty": False, "eval": {"valid/ndcg@10": 0.20264, "test/ndcg@10": 0.19696},
              "curve": [1, 2]}
    summary = bookkeeping.summary_values(result)
    assert summary == {"status": "degenerate", "degenerate_reason": "constant scores", "steps": 9, "best_step": 6,
                       "git_dirty": False, "valid/ndcg@10": 0.20264, "test/ndcg@10": 0.19696}
