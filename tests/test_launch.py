"""The launchers as a user runs them: launch.train (result, summary, resume-or-return, busy, W&B)
and launch.sweep end to end with its analysis step."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from scaling_rec import config as config_lib
from scaling_rec.sweep.spec import load_experiment
from scaling_rec.sweep.store import Store
from tests.sweep.helpers import REPO, TINY, launch, shared_cache_dir


@pytest.fixture
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The sweep tests' compilation-cache directory (passed to the launched processes)."""
    return shared_cache_dir(tmp_path_factory)


def _train(workdir: pathlib.Path, cache: pathlib.Path, *overrides: str):
    return launch("launch.train", f"--config={TINY}:one", f"--workdir={workdir}", f"--compilation_cache={cache}",
                  *overrides)


def _run_id(**changes) -> str:
    c = load_experiment(TINY).get_config("one")
    c.train.num_steps = 2
    for k, v in changes.items():
        section, field = k.split("__")
        c[section][field] = v
    return config_lib.run_id(c)


def test_launch_train_runs_reports_and_then_returns_the_finished_run(tmp_path, jax_cache):
    first = _train(tmp_path, jax_cache, "--config.train.num_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    rid = _run_id()
    run_dir = tmp_path / "tiny_study" / "runs" / rid
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 2
    assert f"run {rid} ok" in first.stdout and "N_dense=351" in first.stdout and str(run_dir) in first.stdout
    assert (run_dir / "config.json").exists() and (run_dir / "metrics.jsonl").exists()

    store = Store(tmp_path / "tiny_study")
    with store.lock(rid):
        busy = _train(tmp_path, jax_cache, "--config.train.num_steps=2")
    assert busy.returncode == 75 and "busy" in busy.stderr
    again = _train(tmp_path, jax_cache, "--config.train.num_steps=2")
    assert again.returncode == 0 and f"run {rid} ok" in again.stdout
    assert json.loads((run_dir / "result.json").read_text()) == result
    shown = re.search(r"([\d.]+) s this call", again.stdout).group(1)
    assert shown != f"{result['elapsed_s']:.1f}"  # this call's time, not the stored one of the call that trained


def test_the_summary_names_the_step_its_test_metrics_are_of():
    """TIGER's result['eval'] is the last step's test (result['best'] the best step's): the summary called it
    the best validation step's."""
    code = ("from launch.train import summary; "
            "print(summary({'steps': 20, 'best_step': 5, 'best': {'step': 5}, 'eval': {'test/ndcg@10': 0.1}}, 'd')); "
            "print(summary({'steps': 20, 'best_step': 5, 'eval': {'test/ndcg@10': 0.1}}, 'd'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test (last step 20; best valid step 5 in 'best'): ndcg@10=0.1000" in out.stdout
    assert "test (best valid step 5): ndcg@10=0.1000" in out.stdout


def test_launch_train_logs_to_wandb_offline(tmp_path, jax_cache):
    proc = _train(tmp_path, jax_cache, "--config.train.num_steps=3", "--config.logging.wandb=True")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rid = _run_id(train__num_steps=3)
    offline = list((tmp_path / "tiny_study" / "runs" / rid / "wandb").glob(f"offline-run-*-{rid}"))
    assert offline and list(offline[0].glob("*.wandb"))


def test_launch_sweep_rejects_an_unknown_key_before_running(tmp_path):
    proc = launch("launch.sweep", f"--config={TINY}:steps", f"--workdir={tmp_path}", "--config.model.num_blockz=2")
    assert proc.returncode != 0 and "num_blockz" in proc.stderr
    assert not (tmp_path / "tiny_study").exists()
