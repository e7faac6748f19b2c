"""CTR training: config validation, a tiny synthetic run that learns, the run directory contract."""

from __future__ import annotations

import json

import pytest

from experiments.wukong.frappe import get_config
from scaling_rec import ctr_config
from scaling_rec.data.ctr import synthetic_ctr
from scaling_rec.errors import ConfigError
from scaling_rec.train.ctr_loop import train_and_evaluate

RESULT_FIELDS = ("status", "run_id", "flops_planned", "flops_spent", "n_dense", "n_emb", "examples_seen",
                 "final_train_loss", "eval", "wall_time_s", "device_kind", "num_devices")


def test_config_validation_errors():
    c = ctr_config.default_config()
    ctr_config.validate(c)
    c.model.famliy = "wukong"
    with pytest.raises(ConfigError, match="model.family"):
        ctr_config.validate(c)
    c = ctr_config.default_config()
    c.model.family = "xdeepfm"
    with pytest.raises(ConfigError, match="not one of"):
        ctr_config.validate(c)
    c = ctr_config.default_config()
    c.train.num_steps = 5
    with pytest.raises(ConfigError, match="exactly one"):
        ctr_config.validate(c)


@pytest.mark.parametrize("name, key, value", [("frappe", "hash_buckets", 16), ("synthetic", "hash_buckets", 16),
                                              ("synthetic", "min_count", 5)])
def test_a_data_option_the_dataset_does_not_read_is_refused(name, key, value):
    """Frappe's and the synthetic reader take no hash_buckets (synthetic no min_count): the key changed the run
    id and nothing else, so a sweep over it trained one dataset under several labels."""
    c = ctr_config.default_config()
    c.data.name = name
    ctr_config.validate(c)
    c.data[key] = value
    with pytest.raises(ConfigError, match=f"'data.{key}' = {value}: data.name='{name}' does not read it"):
        ctr_config.validate(c)


@pytest.mark.parametrize("preset", ["wukong", "dlrm", "dcnv2"])
def test_presets_validate(preset):
    ctr_config.validate(get_config(preset))


def test_tiny_train_learns_and_writes_run_dir(tmp_path):
    data, _ = synthetic_ctr(3000, seed=0)
    c = get_config("tiny")
    c.model.mlp_depth, c.model.num_layers = 1, 1
    c.train.batch_size, c.train.num_epochs, c.train.num_steps, c.train.eval_every = 128, 0.0, 96, 16
    c.train.learning_rate, c.eval.patience = 1e-2, 0
    c.logging.progress = False
    result = train_and_evaluate(c, tmp_path, data=data)
    for key in RESULT_FIELDS:
        assert key in result
    assert result["status"] == "ok" and result["examples_seen"] == 96 * 128
    assert result["flops_spent"] == pytest.approx(result["flops_per_example"] * 96 * 128)
    run_dir = tmp_path / "runs" / result["run_id"]
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.jsonl", "result.json", "ckpt"}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert result["eval"]["test/auc"] > 0.6  # planted interactions are learnable (chance = 0.5)
    assert train_and_evaluate(c, tmp_path, data=data) == json.loads((run_dir / "result.json").read_text())


@pytest.mark.parametrize("multiple, steps", [(0.4, 1), (1.0, 1), (2.5, 3), (3.0, 3)])
def test_a_flops_budget_runs_the_fewest_steps_that_reach_it(tmp_path, multiple, steps):
    """spent >= C, as the sequential plan: a budget between two step counts rounds up (it rounded down: a CTR
    run spent up to a step less than its budget, a sequential one up to a step more)."""
    from scaling_rec.train.ctr_loop import CTRTask

    data, _ = synthetic_ctr(3000, seed=0)
    c = get_config("tiny")
    c.train.batch_size, c.train.num_epochs = 128, 0.0
    per_step = CTRTask(c, data, tmp_path, True).plan(None).flops_per_step[0]  # num_epochs=0: a budget of 0 → 1 step
    c.train.flops_budget = multiple * per_step
    plan = CTRTask(c, data, tmp_path, True).plan(None)
    assert plan.total_steps == steps and plan.flops_per_step.sum() >= c.train.flops_budget
