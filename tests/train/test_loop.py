"""The train loop end to end on a tiny synthetic run: result fields, exact resume, divergence."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scaling_rec.config import run_id
from scaling_rec.errors import ConfigError
from scaling_rec.train.loop import train_and_evaluate
from tests._jax_cache import child_env
from tests.train._tiny import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
REQUIRED = ("status", "run_id", "flops_planned", "flops_spent", "n_dense", "n_emb", "examples_seen",
            "final_train_loss", "eval", "wall_time_s", "device_kind", "num_devices")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ref")
    return workdir, train_and_evaluate(tiny_config(), workdir)


def test_result_has_every_field_and_is_consistent(reference):
    workdir, r = reference
    for key in REQUIRED:
        assert key in r, key
    assert r["status"] == "ok"
    assert r["steps"] == r["total_steps"] == 24
    assert r["flops_spent"] == pytest.approx(r["flops_planned"])
    assert r["n_dense"] > 0 and r["n_emb"] > 0
    assert np.isfinite(r["final_train_loss"])
    assert 0.0 <= r["eval"]["test/ndcg@10"] <= 1.0 and "test/ndcg@10_se" in r["eval"]
    run_dir = workdir / "runs" / r["run_id"]
    assert json.loads((run_dir / "result.json").read_text()) == r
    assert (run_dir / "config.json").exists()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 24
    assert not list(run_dir.glob(".*.tmp")), "temporary files left behind"


def test_finished_run_is_returned_not_rerun(reference):
    workdir, r = reference
    again = train_and_evaluate(tiny_config(), workdir)
    assert again == r


def test_flops_budget_sets_the_length(tmp_path):
    per_step = None
    r0 = train_and_evaluate(tiny_config(num_steps=4), tmp_path)
    per_step = r0["flops_spent"] / 4
    budget = 10.5 * per_step
    r = train_and_evaluate(tiny_config(num_steps=0, flops_budget=float(budget)), tmp_path)
    assert r["flops_spent"] >= budget
    assert r["flops_spent"] - budget < 2 * per_step  # stops within one batch of the budget


def test_resume_after_sigkill_is_exact(reference, tmp_path, package_jax_cache):
    """A run killed with SIGKILL mid-training and restarted ends with the same numbers."""
    _, ref = reference
    env = {**os.environ, "PYTHONPATH": str(ROOT), **child_env(package_jax_cache)}
    child = subprocess.Popen([sys.executable, str(ROOT / "tests/train/_child_train.py"), str(tmp_path)],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "runs" / run_id(tiny_config()) / "ckpt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            steps = [int(p.name) for p in ckpt_dir.glob("[0-9]*") if p.name.isdigit()] if ckpt_dir.exists() else []
            if steps and max(steps) >= 8:
                break
            if child.poll() is not None:
                pytest.fail("child finished before it could be killed")
            time.sleep(0.1)
        else:
            pytest.fail("no checkpoint appeared in time")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not (tmp_path / "runs" / run_id(tiny_config()) / "result.json").exists()
    resumed = train_and_evaluate(tiny_config(), tmp_path)
    assert resumed["final_train_loss"] == ref["final_train_loss"]
    assert resumed["eval"] == ref["eval"]
    assert resumed["examples_seen"] == ref["examples_seen"]


def test_interrupt_on_an_evaluated_step_then_resume_is_exact(reference, tmp_path):
    """stop_after_steps ending on a step that was just evaluated and saved (8): saved once, and the
    resumed run ends with the uninterrupted numbers."""
    _, ref = reference
    stopped = train_and_evaluate(tiny_config(), tmp_path, stop_after_steps=8)
    assert stopped == {"status": "interrupted", "run_id": ref["run_id"], "step": 8}
    resumed = train_and_evaluate(tiny_config(), tmp_path)
    assert resumed["status"] == "ok"
    assert resumed["final_train_loss"] == ref["final_train_loss"] and resumed["eval"] == ref["eval"]


def test_diverged_run_is_recorded(tmp_path):
    r = train_and_evaluate(tiny_config(learning_rate=1e38, num_steps=8), tmp_path)
    assert r["status"] == "diverged"
    saved = json.loads((tmp_path / "runs" / r["run_id"] / "result.json").read_text())
    assert saved["status"] == "diverged"


def test_a_divergence_seen_only_by_the_evaluation_is_recorded(tmp_path):
    """One step at lr 1e38: its training loss (computed before the update) is finite, the parameters after it
    are not, and the validation cross-entropy is NaN while the tied scores still give NDCG@10 > 0. The run is
    diverged, not ok (it was 'ok' with test NDCG@10 .09)."""
    r = train_and_evaluate(tiny_config(learning_rate=1e38, num_steps=1, log_every=1, eval_every=1), tmp_path)
    assert np.isfinite(r["final_train_loss"]) and r["status"] == "diverged" and r["best_step"] is None


@pytest.mark.parametrize("stop", ["diverged", "early_stop"])
def test_a_stop_decided_before_a_kill_holds_after_resume(tmp_path, stop):
    """Killed after the stopping step's checkpoint, before result.json (deleted here: the same files on disk),
    the run resumes into the same stop instead of training on (steps, FLOPs and status unchanged)."""
    c = (tiny_config(learning_rate=1e38, num_steps=16) if stop == "diverged"
         else tiny_config(learning_rate=1e-12, num_steps=48, eval_every=4))
    c.eval.patience = 1  # lr 1e-12: the second evaluation equals the first, no improvement, stop at step 8
    first = train_and_evaluate(c, tmp_path)
    assert first["steps"] < c.train.num_steps and first["status"] == ("diverged" if stop == "diverged" else "ok")
    (tmp_path / "runs" / first["run_id"] / "result.json").unlink()
    again = train_and_evaluate(c, tmp_path)
    for key in ("status", "steps", "flops_spent", "examples_seen", "best_step"):
        assert again[key] == first[key], key


def test_bad_config_fails_before_writing_anything(tmp_path):
    c = tiny_config()
    c.mesh.data = 4  # this process has 1 device
    with pytest.raises(ConfigError, match="4 devices, but 1 are available"):
        train_and_evaluate(c, tmp_path)
    assert not any(tmp_path.iterdir())


def test_full_softmax_trains_and_counts_every_item(reference, tmp_path):
    """train.loss='full_softmax' trains and its FLOPs score every item:
    the same steps cost exactly 2·D·(V − 1 − K) more per target token than the sampled loss with K negatives."""
    _, sampled = reference
    c = tiny_config(loss="full_softmax")
    full = train_and_evaluate(c, tmp_path)
    assert full["status"] == "ok" and full["steps"] == sampled["steps"] and np.isfinite(full["final_train_loss"])
    assert full["eval"]["valid/ndcg@10"] > 0.0
    extra = full["flops_spent"] - sampled["flops_spent"]
    per_target = 3 * 2 * c.model.embed_dim * (c.data.synthetic_items - 1 - c.train.num_negatives)
    assert extra == pytest.approx(per_target * full["tokens_seen"])  # every training token has a target
