"""benchmarks.precision: the paired bfloat16 - float32 summary against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from benchmarks.precision import METRICS, load_config, summarise


def _run(seed, dtype, value, se=0.01):
    return {"seed": seed, "matmul_dtype": dtype,
            "eval": {**{m: value for m in METRICS}, **{m + "_se": se for m in METRICS}}}


def test_paired_difference_and_the_one_se_rule():
    runs = [_run(0, "float32", 0.30), _run(0, "bfloat16", 0.31), _run(1, "float32", 0.20), _run(1, "bfloat16", 0.23),
            _run(2, "float32", 0.25)]  # seed 2's bfloat16 run has not finished: not paired
    s = summarise(runs, ["float32", "bfloat16"])
    d = s["difference"]["test/hr@10"]
    assert d["seeds"] == [0, 1] and d["n"] == 2
    assert d["mean"] == pytest.approx(0.02)
    assert d["se"] == pytest.approx(math.sqrt(((0.01 - 0.02) ** 2 + (0.03 - 0.02) ** 2) / 1) / math.sqrt(2))
    assert d["eval_se"] == pytest.approx(0.01) and d["within_one_se"] is False
    assert s["per_dtype"]["float32"]["test/hr@10"]["n"] == 3
    assert s["per_dtype"]["float32"]["test/hr@10"]["mean"] == pytest.approx(0.25)
    close = summarise([_run(0, "float32", 0.30), _run(0, "bfloat16", 0.305)], ["float32", "bfloat16"])
    assert close["difference"]["test/ndcg@10"]["within_one_se"] is True
    assert close["difference"]["test/ndcg@10"]["se"] is None  # one seed: no spread


def test_the_experiment_presets_load_and_validate():
    from scaling_rec.config import validate

    for preset in ("small", "large"):
        c = load_config(f"experiments/hstu/precision.py:{preset}")
        validate(c)
        assert c.data.name == "ml-100k" and c.model.family == "hstu" and c.eval.exclude_history
    assert load_config("experiments/hstu/precision.py:large").model.embed_dim == 256
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("experiments/hstu/precision.py:huge")
