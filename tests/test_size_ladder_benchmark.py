"""benchmarks/size_ladder.py: HSTU's lead and its SE, and the table it builds from a sweep's store (a
hand-made store here; the real sweep is experiments/hstu/size_ladder.py, its tiny preset end to end in the
slow test)."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from benchmarks import size_ladder
from experiments.hstu import size_ladder as experiment
from scaling_rec.io import atomic_write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_lead_and_its_delta_method_se():
    value, se = size_ladder.lead(0.044, 0.040, 0.001, 0.002)
    assert value == pytest.approx(0.1)
    assert se == pytest.approx(1.1 * math.hypot(0.001 / 0.044, 0.002 / 0.040))


def _store(workdir: pathlib.Path, numbers: dict[tuple[str, str, str], float | None],
           train_loss: dict[tuple[str, str, str], float] | None = None) -> None:
    root = workdir / experiment.get_config("tiny").study
    runs = []
    for i, ((dataset, rung, family), ndcg) in enumerate(numbers.items()):
        rid = f"run{i:08d}"
        runs.append({"run_id": rid, "size": f"{family}/{rung}", "family": family})
        atomic_write_json(root / "runs" / rid / "config.json", {"data": {"name": dataset}})
        if ndcg is not None:
            ev = {"test/ndcg@10": ndcg, "test/ndcg@10_se": 0.001, "test/hr@10": 2 * ndcg, "test/hr@10_se": 0.002}
            atomic_write_json(root / "runs" / rid / "result.json",
                              {"status": "ok", "eval": ev, "n_dense": 1000 * (i + 1), "num_devices": 1,
                               "device_kind": "cpu",
                               "final_train_loss": (train_loss or {}).get((dataset, rung, family), 5.0)})
    atomic_write_json(root / "sweep" / "manifest.json", {"runs": runs})


def test_collect_pairs_the_families_and_never_guesses_a_missing_run(tmp_path):
    _store(tmp_path, {("synthetic", "XS", "hstu"): 0.050, ("synthetic", "XS", "sasrec"): 0.050,
                      ("synthetic", "S", "hstu"): 0.066, ("synthetic", "S", "sasrec"): None})
    rows, devices = size_ladder.collect(tmp_path, experiment, "tiny")
    assert devices == "1x cpu"
    xs, s = rows
    assert (xs["rung"], xs["lead_ndcg10"], xs["leads_by_10pct"]) == ("XS", 0.0, False)
    assert s["sasrec"] is None and "lead_ndcg10" not in s
    assert "missing" in size_ladder.markdown(rows)


def test_a_lead_of_ten_percent_is_named(tmp_path):
    _store(tmp_path, {("synthetic", "XS", "hstu"): 0.050, ("synthetic", "XS", "sasrec"): 0.050,
                      ("synthetic", "S", "hstu"): 0.066, ("synthetic", "S", "sasrec"): 0.050})
    out = tmp_path / "out.json"
    report = size_ladder.main(["--config=experiments/hstu/size_ladder.py:tiny", f"--workdir={tmp_path}",
                               f"--out={out}"])
    assert report["first_rung_hstu_leads_by_10pct"] == {"synthetic": "S"}
    row = report["rows"][1]
    assert row["leads_by_10pct"] and row["leads_by_10pct_2se"]  # 32% +- ~3%
    assert json.loads(out.read_text())["rows"][1]["lead_ndcg10"] == pytest.approx(0.32)


def test_a_larger_rung_that_fits_its_training_data_worse_is_not_a_lead(tmp_path):
    # SASRec at S trains to a higher loss than at XS (a failed optimisation): its row's 32% lead is no result.
    numbers = {("synthetic", "XS", "hstu"): 0.050, ("synthetic", "XS", "sasrec"): 0.050,
               ("synthetic", "S", "hstu"): 0.066, ("synthetic", "S", "sasrec"): 0.050}
    _store(tmp_path, numbers, {("synthetic", "XS", "sasrec"): 5.5, ("synthetic", "S", "sasrec"): 8.1})
    report = size_ladder.main(["--config=experiments/hstu/size_ladder.py:tiny", f"--workdir={tmp_path}",
                               f"--out={tmp_path / 'out.json'}"])
    xs, s = report["rows"]
    assert xs["comparable"] and not xs["sasrec"]["fails_to_fit"]
    assert s["leads_by_10pct"] and not s["comparable"] and s["sasrec"]["fails_to_fit"] and not s["hstu"]["fails_to_fit"]
    assert report["first_rung_hstu_leads_by_10pct"] == {"synthetic": None}
    assert "not comparable: sasrec" in size_ladder.markdown(report["rows"])


def test_fails_to_fit_compares_with_every_smaller_rung_and_skips_missing_runs():
    ladder = [{"final_train_loss": 6.0}, None, {"final_train_loss": 5.0}, {"final_train_loss": 5.5},
              {"final_train_loss": None}]
    size_ladder.mark_fails_to_fit(ladder)
    assert [r and r["fails_to_fit"] for r in ladder] == [False, None, False, True, None]


def test_the_sweep_is_both_families_at_every_rung_and_dataset():
    points = experiment.get_sweep("gpu")
    assert len(points) == 2 * 5 * 2 and {p["size"].split("/")[0] for p in points} == {"hstu", "sasrec"}
    assert {p["size"].split("/")[1] for p in points} == {"XS", "S", "d64x4", "d128x8", "d256x16"}


@pytest.mark.slow
def test_the_tiny_preset_end_to_end(tmp_path):
    """launch.sweep runs the tiny ladder (4 runs on synthetic sequences), then the benchmark tabulates it."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "launch.sweep", "--config=experiments/hstu/size_ladder.py:tiny",
                    f"--workdir={tmp_path}", "--executor=inline", "--noanalyze"], cwd=ROOT, check=True,
                   capture_output=True)
    report = size_ladder.main(["--config=experiments/hstu/size_ladder.py:tiny", f"--workdir={tmp_path}",
                               f"--out={tmp_path / 'out.json'}"])
    assert all(r["hstu"] and r["sasrec"] and "lead_ndcg10" in r for r in report["rows"])
