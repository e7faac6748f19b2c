"""benchmarks/frappe.py: each default preset is its experiment file's preset (the same run id as
launch.train gives it, so a run trained by hand is the benchmark's run), with the seed and the optional
top-MLP override applied."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import frappe
from experiments.rankmixer import frappe as rankmixer_frappe
from experiments.wukong import frappe as wukong_frappe
from scaling_rec.schema import run_id


def test_each_default_preset_is_its_experiment_files_preset():
    assert "rankmixer" in frappe.PRESETS
    for preset in frappe.PRESETS:
        module = rankmixer_frappe if preset == "rankmixer" else wukong_frappe
        expected = module.get_config(preset)
        expected.seed = 2
        c = frappe.run_config(preset, seed=2, mlp_width=0, mlp_depth=0)
        assert c.model.family == preset
        assert run_id(c) == run_id(expected)


def test_the_top_mlp_override_reaches_rankmixer():
    c = frappe.run_config("rankmixer", seed=0, mlp_width=64, mlp_depth=1)
    assert (c.model.mlp_width, c.model.mlp_depth) == (64, 1)
    assert run_id(c) != run_id(frappe.run_config("rankmixer", seed=0, mlp_width=0, mlp_depth=0))


@pytest.mark.slow
def test_the_benchmark_writes_every_finished_seed(tmp_path, monkeypatch):
    out = tmp_path / "frappe.json"
    frappe.main(["--presets=tiny", "--seeds=1,0", f"--workdir={tmp_path / 'runs'}", f"--out={out}", "--jobs=2"])
    model = json.loads(out.read_text())["models"]["tiny"]
    assert [r["seed"] for r in model["runs"]] == [0, 1]
    aucs = [r["test/auc"] for r in model["runs"]]
    assert model["summary"]["test/auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert model["summary"]["test/auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))
    assert len({r["run_id"] for r in model["runs"]}) == 2
    monkeypatch.setattr(frappe, "train_and_evaluate", None)  # a rerun reads finished runs, trains none
    frappe.main(["--presets=tiny", "--seeds=0,1", f"--workdir={tmp_path / 'runs'}", f"--out={out}"])
    assert json.loads(out.read_text())["models"]["tiny"]["runs"] == model["runs"]


def test_the_matmul_dtype_override_reaches_the_config_and_the_run_id():
    keep = frappe.run_config("dlrm", seed=0, mlp_width=0, mlp_depth=0)
    assert keep.model.matmul_dtype == "float32"
    assert run_id(keep) == run_id(frappe.run_config("dlrm", seed=0, mlp_width=0, mlp_depth=0, matmul_dtype=""))
    bf16 = frappe.run_config("dlrm", seed=0, mlp_width=0, mlp_depth=0, matmul_dtype="bfloat16")
    assert bf16.model.matmul_dtype == "bfloat16" and run_id(bf16) != run_id(keep)
