"""RunLogger: the JSONL log, and a clear error when W&B is asked for but cannot be imported."""

from __future__ import annotations

import json
import sys

import pytest

from scaling_rec.config import default_config
from scaling_rec.errors import ConfigError
from scaling_rec.train.logging import RunLogger


def _config(wandb: bool):
    c = default_config()
    c.logging.wandb = wandb
    return c


def test_missing_wandb_is_a_config_error_before_any_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError, match=r"logging\.wandb=False"):
        RunLogger(tmp_path, _config(True), "r0")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_records_are_appended_and_a_resume_drops_later_ones(tmp_path):
    logger = RunLogger(tmp_path, _config(False), "r0")
    for step in (1, 2, 3):
        logger.log({"step": step, "loss": 1.0 / step})
    logger.close()
    resumed = RunLogger(tmp_path, _config(False), "r0", resume_step=2)
    resumed.log({"step": 3, "loss": 0.25})
    resumed.close()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
