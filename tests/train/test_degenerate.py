"""Issue 14, finding 1: a model whose scores collapse to one value is recorded `degenerate`, never `ok` with
perfect metrics, in every family (sequential, CTR, TIGER) and through launch.train; its metrics are those
of a random ranking under the expected tie rule, and a degenerate run is finished (returned, not rerun)."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import pytest

from experiments.wukong.frappe import get_config as ctr_preset
from scaling_rec.data.ctr import synthetic_ctr
from scaling_rec.models.tiger import Tiger
from scaling_rec.train import bookkeeping, ctr_loop, loop, tiger_loop
from tests.sweep.helpers import TINY, launch, shared_cache_dir
from tests.tiger.test_loop import _config as tiger_tiny
from tests.tiger.test_loop import _data_dir
from tests.train._tiny import tiny_config


def test_degenerate_reason_threshold_and_status():
    assert bookkeeping.degenerate_reason({"best": {"tied_share": 0.0}, "last": None}) is None
    assert bookkeeping.degenerate_reason({"best": {"ndcg@10": 0.1}}) is None
    reason = bookkeeping.degenerate_reason({"best": {"tied_share": 0.1}, "last validation": {"tied_share": 0.5}})
    assert reason.startswith("scores collapsed: at the last validation, 50%")
    assert bookkeeping.final_status("ok", {"x": {"tied_share": 1.0}}, "r")["status"] == "degenerate"
    assert bookkeeping.final_status("diverged", {"x": {"tied_share": 1.0}}, "r") == {"status": "diverged"}
    assert bookkeeping.final_status("ok", {"x": {"tied_share": 0.01}}, "r") == {"status": "ok"}


def test_sequential_run_at_lr_1e30_is_degenerate_not_perfect(tmp_path):
    """The issue's reproduction (beauty.py:tiny at lr 1e30: HR@10 = NDCG@10 = MRR = 1.0, status ok) on
    synthetic data: 60 items, so a random ranking has HR@10 = 10/60."""
    config = tiny_config(learning_rate=1e30, num_steps=8)
    r = loop.train_and_evaluate(config, tmp_path)
    assert r["status"] == "degenerate" and "tied_share 1.000" in r["degenerate_reason"]
    ev = r["eval"]
    assert ev["test/tied_share"] == 1.0 and ev["test/tie_fraction"] == 1.0
    assert ev["test/hr@10"] == pytest.approx(10 / 60, rel=1e-5) and ev["test/mrr"] < 0.1
    saved = json.loads((tmp_path / "runs" / r["run_id"] / "result.json").read_text())
    assert saved == r
    assert loop.train_and_evaluate(config, tmp_path) == r  # finished: returned, not rerun


def test_trained_sequential_run_has_no_ties(tmp_path):
    r = loop.train_and_evaluate(tiny_config(num_steps=8), tmp_path)
    assert r["status"] == "ok" and "degenerate_reason" not in r
    assert r["eval"]["test/tied_share"] == 0.0


def test_ctr_run_with_dead_outputs_is_degenerate(tmp_path):
    """DLRM at learning rate 30: its ReLUs die and every example gets the same logit (AUC exactly 0.5)."""
    data, _ = synthetic_ctr(3000, seed=0)
    c = ctr_preset("tiny")
    c.model.family, c.model.mlp_depth, c.model.num_layers = "dlrm", 1, 1
    c.train.batch_size, c.train.num_epochs, c.train.num_steps, c.train.eval_every = 128, 0.0, 16, 8
    c.train.learning_rate, c.eval.patience, c.logging.progress = 30.0, 0, False
    r = ctr_loop.train_and_evaluate(c, tmp_path, data=data)
    assert r["status"] == "degenerate" and "tied_share 1.000" in r["degenerate_reason"]
    assert r["eval"]["test/auc"] == 0.5 and r["eval"]["test/tied_share"] == 1.0
    assert ctr_loop.train_and_evaluate(c, tmp_path, data=data) == r


def test_tiger_run_with_constant_logits_is_degenerate(tmp_path, monkeypatch):
    """TIGER at lr 1e30 diverges (NaN loss) rather than collapsing, so the collapse is planted: the decoder's
    beam-search logits are one constant, every semantic ID then has the same log-likelihood. Under the old
    rule the beam order (top_k's tie order) decided the hits."""
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    trained = Tiger.step_logits
    monkeypatch.setattr(Tiger, "step_logits", lambda self, ctx, codes, t: jnp.zeros_like(trained(self, ctx, codes, t)))
    r = tiger_loop.train_and_evaluate(tiger_tiny(_data_dir(tmp_path / "data")), tmp_path / "work")
    assert r["status"] == "degenerate" and "tied_share 1.000" in r["degenerate_reason"]
    assert r["eval"]["test/tied_share"] == 1.0 and r["eval"]["test/recall@10"] == 0.0
    assert math.isfinite(r["final_train_loss"])


def test_launch_train_reports_a_collapsed_run(tmp_path, tmp_path_factory):
    proc = launch("launch.train", f"--config={TINY}:one", f"--workdir={tmp_path}",
                  f"--compilation_cache={shared_cache_dir(tmp_path_factory)}", "--config.train.num_steps=2",
                  "--config.train.learning_rate=1e30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert " degenerate: " in proc.stdout and "degenerate: scores collapsed" in proc.stdout
