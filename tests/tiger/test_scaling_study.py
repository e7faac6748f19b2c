"""experiments/tiger/scaling.py through the sweep machinery: points validate against tiger_config, compute
climbs along the ladder, and a smoke sweep trains TIGER runs with the TIGER loop, labelled for the analysis."""

from __future__ import annotations

import io
import pathlib

import pytest

from experiments.tiger import scaling
from scaling_rec.analysis.results import load_results
from scaling_rec.flops import tiger_forward_flops
from scaling_rec.sweep.executors import InlineExecutor
from scaling_rec.sweep.runner import run_sweep
from scaling_rec.sweep.spec import expand
from scaling_rec.sweep.store import Store, study_root
from tests.tiger.test_loop import _config, _data_dir


def test_gpu_points_validate_and_the_ladder_climbs():
    specs = expand(scaling.get_config("gpu"), scaling.get_sweep("gpu"))
    assert len(specs) == 16 and {s.family for s in specs} == {"tiger"}
    rungs = [s for s in specs if s.config.train.num_steps == 20_000]
    flops = [tiger_forward_flops(s.config, length=4) for s in rungs]
    assert [s.size for s in rungs] == ["tiger/r0", "tiger/r1", "tiger/r2", "tiger/r3"]
    assert all(b > 2 * a for a, b in zip(flops, flops[1:], strict=False)), flops
    paper = next(s.config for s in rungs if s.size == "tiger/r2")
    assert (paper.model.d_model, paper.model.num_layers, paper.model.d_ff) == (128, 4, 1024)
    assert sorted(s.config.ids.codebook_size for s in specs if "-k" in s.size) == [64, 128, 512, 1024]


@pytest.fixture
def data_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    return _data_dir(tmp_path / "data")


def test_smoke_sweep_runs_the_tiger_loop(data_dir: pathlib.Path, tmp_path: pathlib.Path):
    base = _config(data_dir)
    base.study = "tiger_scaling_smoke"
    base.train.eval_every = 10**6
    specs = expand(base, scaling.get_sweep("smoke"))
    store = Store(study_root(tmp_path, base))
    report = run_sweep(specs, store, InlineExecutor(tmp_path), out=io.StringIO(), poll_s=0.01)
    assert [r.state for r in report.runs] == ["ok"] * 4
    df, problems = load_results(store.root)
    assert not problems and set(df["family"]) == {"tiger"} and sorted(set(df["size"])) == ["s0", "s1"]
    assert sorted(df["steps"]) == [2, 2, 4, 4] and (df["C"] > 0).all()
