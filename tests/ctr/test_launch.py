"""`python -m launch.train` routes CTR configs (model.family wukong/dlrm/dcnv2) to the CTR trainer."""

from __future__ import annotations

import json

from scaling_rec import config as config_lib
from scaling_rec.sweep.store import Store
from tests.sweep.helpers import REPO, launch

FRAPPE = REPO / "experiments" / "wukong" / "frappe.py"
OVERRIDES = ("--config.train.num_epochs=0.0", "--config.train.num_steps=4", "--config.train.eval_every=2",
             "--config.model.num_layers=1", "--config.model.mlp_depth=1")


def _run_id() -> str:
    from experiments.wukong.frappe import get_config

    c = get_config("tiny")
    c.train.num_epochs, c.train.num_steps, c.train.eval_every = 0.0, 4, 2
    c.model.num_layers, c.model.mlp_depth = 1, 1
    return config_lib.run_id(c)


def test_launch_train_runs_a_ctr_config_through_the_ctr_loop(tmp_path):
    cache = tmp_path / "jax_cache"
    args = (f"--config={FRAPPE}:tiny", f"--workdir={tmp_path}", f"--compilation_cache={cache}", *OVERRIDES)
    proc = launch("launch.train", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rid = _run_id()
    run_dir = tmp_path / "wukong_frappe" / "runs" / rid
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["family"] == "wukong" and result["steps"] == 4
    assert "test/auc" in result["eval"] and result["dataset"] == "synthetic"
    assert f"run {rid} ok: wukong on synthetic" in proc.stdout and "auc=" in proc.stdout
    with Store(tmp_path / "wukong_frappe").lock(rid):  # the CTR path takes the run lock too
        busy = launch("launch.train", *args)
    assert busy.returncode == 75 and "busy" in busy.stderr
