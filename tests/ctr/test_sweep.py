"""CTR configs go through the sweep machinery: validated against ctr_config, stored specs round-trip,
trained by the CTR loop, labelled in the analysis table."""

from __future__ import annotations

import io

import pytest

from scaling_rec import config as config_lib
from scaling_rec.analysis.results import load_results
from scaling_rec.errors import ConfigError
from scaling_rec.sweep.executors import InlineExecutor
from scaling_rec.sweep.runner import run_sweep
from scaling_rec.sweep.spec import expand
from scaling_rec.sweep.store import Store, read_spec, study_root

POINTS = [
    {"size_label": "wukong/r0", "model.family": "wukong", "model.num_layers": 1, "model.mlp_depth": 1},
    {"size_label": "dlrm/r0", "model.family": "dlrm", "model.mlp_width": 16, "model.mlp_depth": 1},
]


def _base():
    from experiments.wukong.frappe import get_config

    c = get_config("tiny")  # synthetic CTR data
    c.study = "ctr_sweep_test"
    c.train.num_epochs, c.train.num_steps, c.train.eval_every = 0.0, 3, 10**6
    c.logging.progress = False
    return c


def test_ctr_points_are_validated_against_the_ctr_schema():
    specs = expand(_base(), POINTS)
    assert [(s.family, s.size) for s in specs] == [("wukong", "wukong/r0"), ("dlrm", "dlrm/r0")]
    with pytest.raises(ConfigError, match="sweep point 0 .*num_fmb"):
        expand(_base(), [{"model.num_fmb": 0}])
    with pytest.raises(ConfigError, match="num_blokcs"):  # a sequential-only key is unknown to the CTR schema
        expand(_base(), [{"model.num_blokcs": 2}])


def test_a_ctr_sweep_runs_the_ctr_loop_and_its_specs_round_trip(tmp_path):
    base = _base()
    specs = expand(base, POINTS)
    store = Store(study_root(tmp_path, base))
    report = run_sweep(specs, store, InlineExecutor(tmp_path), out=io.StringIO(), poll_s=0.01)
    assert [r.state for r in report.runs] == ["ok", "ok"]
    for spec in specs:
        config, labels = read_spec(store.spec_path(spec.run_id))
        assert config_lib.run_id(config) == spec.run_id and labels["size"] == spec.size
        result = store.read_result(spec.run_id)
        assert result["family"] == spec.family and result["steps"] == 3 and "test/auc" in result["eval"]
    df, problems = load_results(store.root)
    assert not problems and df["usable"].all()
    assert sorted(zip(df["family"], df["size"], strict=True)) == [("dlrm", "r0"), ("wukong", "r0")]
