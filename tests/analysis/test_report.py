"""End to end: a fake results store (2 families × 4 budgets × 3 sizes) → fits.json, report.md, PNGs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scaling_rec.analysis import load_results, write_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Plausible sampled-softmax losses: family → (E, A, alpha, B, beta).
LAWS = {"hstu": (4.0, 80.0, 0.30, 150.0, 0.28), "sasrec": (4.2, 60.0, 0.25, 120.0, 0.25)}
BUDGETS = (1e15, 1e16, 1e17, 1e18)


def make_store(root: pathlib.Path, seed: int = 0, budgets: tuple[float, ...] = BUDGETS,
               flat_noise: float | None = None) -> pathlib.Path:
    """runs/<id>/{result.json, config.json} for 2 families × 4 budgets × 3 sizes, plus bad runs.

    flat_noise: when given, every run's loss is 5.0 times exp(N(0, flat_noise)) instead of the law's.
    """
    rng = np.random.default_rng(seed)
    study = root / "hstu_vs_sasrec"
    for fam, (e, a, al, b, be) in LAWS.items():
        for c in budgets:
            for k, mult in enumerate((0.2, 1.0, 5.0)):
                n = 0.05 * c**0.5 * mult
                d = c / (6.0 * n) * rng.uniform(0.97, 1.03)
                loss = (e + a * n**-al + b * d**-be) * np.exp(rng.normal(0, 2e-3))
                if flat_noise is not None:
                    loss = 5.0 * float(np.exp(rng.normal(0, flat_noise))) if flat_noise else 5.0
                run_id = f"{fam}-{c:.0e}-{k}"
                run = study / "runs" / run_id
                run.mkdir(parents=True)
                res = {
                    "status": "ok", "run_id": run_id, "flops_planned": c, "flops_spent": c * 1.01,
                    "n_dense": n, "n_emb": 3e6, "examples_seen": d, "final_train_loss": loss * 0.97,
                    "eval": {"loss": loss, "ndcg@10": float(np.exp(-(loss - 3.0))), "hr@10": 0.3},
                    "wall_time_s": 10.0, "device_kind": "cpu", "num_devices": 1,
                }
                (run / "result.json").write_text(json.dumps(res))
                cfg = {"model": {"name": f"{fam}/{'SML'[k]}"}, "study": "hstu_vs_sasrec"}
                (run / "config.json").write_text(json.dumps(cfg))
    bad = study / "runs"
    (bad / "hstu-div").mkdir()
    div = {**res, "status": "diverged", "run_id": "hstu-div", "eval": {"loss": float("nan")}}
    (bad / "hstu-div" / "result.json").write_text(json.dumps(div))
    (bad / "hstu-div" / "config.json").write_text(json.dumps({"model": {"name": "hstu/L"}}))
    (bad / "cut-off").mkdir()
    (bad / "cut-off" / "result.json").write_text('{"status": "ok", "run_')
    return study


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> pathlib.Path:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def cli_out(store, tmp_path_factory) -> pathlib.Path:
    """`python -m launch.analyze ... --wandb` run once (offline W&B) on the fake store."""
    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "launch.analyze", f"--workdir={store}", f"--out={out}", "--n_boot=8",
         "--seed=0", "--wandb"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not valid JSON" in proc.stderr  # the corrupted run is warned about
    return out


def test_report_end_to_end(cli_out):
    for name in ("fits.json", "report.md", "loss_vs_compute.png", "isoflop.png", "optimal_size.png"):
        path = cli_out / name
        assert path.exists() and path.stat().st_size > 0, name
    assert (cli_out / "isoflop.png").read_bytes()[:4] == b"\x89PNG"
    fits = json.loads((cli_out / "fits.json").read_text())
    assert fits["target"]["column"] == "eval/loss" and fits["target"]["transform"] == "none"
    assert fits["bootstrap"] == {"n_boot": 8, "seed": 0, "ci": 0.95}
    assert len(fits["problems"]) == 1 and "cut-off" in fits["problems"][0]["path"]
    hstu = fits["families"]["hstu"]
    assert hstu["points"]["used"] == 12
    assert hstu["points"]["excluded"] == [{"run_id": "hstu-div", "reason": "status=diverged"}]
    assert fits["families"]["sasrec"]["points"]["excluded"] == []
    for fam in LAWS:
        s = fits["families"][fam]
        assert set(s["chinchilla"]["fit"]) >= {"E", "A", "B", "alpha", "beta", "loss", "n_points"}
        ci = s["chinchilla"]["bootstrap"]["params"]["alpha"]
        assert ci["low"] <= ci["high"]
        assert s["power_law"]["fit"]["n_points"] == 4
        assert len(s["isoflop"]["optima"]) == 4 and 0.2 < s["isoflop"]["fit"]["a"] < 0.8
        interval = s["isoflop"]["interval"]
        assert interval["df"] == 2 and set(interval["params"]) == {"a", "b"}  # 4 interior optima
        assert all(p["low"] < p["estimate"] < p["high"] for p in interval["params"].values())
        assert s["holdout"]["chinchilla"]["mean_abs_rel_error"] < 0.05
        assert s["holdout"]["chinchilla"]["flags"] == []  # budgets 10× apart: not an extrapolation
        assert s["chinchilla"]["flags"]["law"] == [] and not s["chinchilla"]["flat_test"]["flat"]
        assert s["holdout"]["power_law"]["law"] == "pure (E=0)"  # 3 training budgets < 4
    md = (cli_out / "report.md").read_text()
    for needle in ("Fitted quantity: **eval/loss**", "status=diverged", "not valid JSON",
                   "Approach 3", "95% CI low", "Holdout extrapolation", "![isoflop.png](isoflop.png)"):
        assert needle in md, needle


def test_wandb_offline_files(cli_out):
    runs = list((cli_out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((cli_out / "wandb").iterdir())
    assert list(runs[0].glob("run-*.wandb")), list(runs[0].iterdir())
    media = list(runs[0].rglob("*.png"))
    assert len(media) >= 3, media
    tables = list(runs[0].rglob("*.table.json"))
    assert tables and "chinchilla" in tables[0].read_text()


def test_ranking_metric_fitted_as_one_minus(store, tmp_path):
    df, problems = load_results(store, warn=False)
    paths = write_report(df[df["family"] == "sasrec"], tmp_path / "out", metric="eval/ndcg@10",
                         n_boot=0, problems=problems)
    fits = json.loads(paths["fits.json"].read_text())
    assert fits["target"]["transform"] == "one_minus" and "higher is better" in fits["target"]["reason"]
    assert list(fits["families"]) == ["sasrec"] and len(fits["problems"]) == 1
    assert fits["families"]["sasrec"]["chinchilla"]["fit"]["n_points"] == 12
    assert "1 − eval/ndcg@10" in paths["report.md"].read_text()


def test_launch_analyze_fails_on_a_study_with_no_usable_run_and_keeps_the_report(tmp_path):
    """Every run diverged: launch.analyze exited 0 ('report: …'), so a sweep of diverged runs read as done."""
    study = make_store(tmp_path / "store", budgets=BUDGETS[:2])
    for path in study.glob("runs/*/result.json"):
        if path.parent.name != "cut-off":
            path.write_text(json.dumps({**json.loads(path.read_text()), "status": "diverged"}))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "launch.analyze", f"--workdir={study}", f"--out={out}",
                           "--n_boot=0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "no usable run" in proc.stderr, proc.stderr[-3000:]
    assert "analyze: family 1/2 'hstu'" in proc.stderr  # progress before each family's fits
    assert "status=diverged" in (out / "report.md").read_text()


def test_family_with_only_diverged_runs_is_reported_not_fitted(store, tmp_path):
    """The report is written (it lists why each run was left out), then FitError: with no usable run at all,
    launch.analyze (and the sweep after it) exited 0 with 'report written'."""
    from scaling_rec.errors import FitError

    df, _ = load_results(store, warn=False)
    only_bad = df[df["run_id"] == "hstu-div"].drop(columns=["study"])
    out = tmp_path / "out"
    with pytest.raises(FitError, match=r"no usable run in DataFrame: 1 runs, none fitted \(1x status=diverged\)"):
        write_report(only_bad, out, n_boot=0)
    fits = json.loads((out / "fits.json").read_text())
    s = fits["families"]["hstu"]
    assert s["points"]["used"] == 0
    assert "too few points" in s["power_law"]["error"] and "too few points" in s["chinchilla"]["error"]
    assert "no usable points" in s["isoflop"]["error"] and "error" in s["holdout"]["chinchilla"]
    assert "Not fitted: too few points" in (out / "report.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["fits.json", "report.md"]  # nothing to plot


def test_parameters_the_data_do_not_pin_down_are_flagged():
    from scaling_rec.analysis.report import identified

    assert identified("alpha", {"low": 0.1, "high": 0.4}) == "yes"
    assert identified("alpha", {"low": -2.0, "high": 3.0}) == "no: CI reaches 0"
    assert identified("a", {"low": -0.2, "high": 0.7}) == "no: CI reaches 0"  # IsoFLOP N* exponent
    assert identified("E", {"low": 0.9, "high": 1.0}) == "yes"
    assert identified("A", {"low": 1e-3, "high": 1e5}).startswith("no: CI spans")
    assert identified("B", {"low": 1.0, "high": float("nan")}) == "no: CI not finite"
    assert identified("E", {}) == "–"
    assert identified("alpha", {"low": 0.05, "high": 0.6}) == "no: CI spans 12× (> 10×)"
    assert identified("log10_kN", {"low": -3.0, "high": -1.5}).startswith("no: CI spans")  # 1.5 decades
    assert identified("log10_kN", {"low": -3.0, "high": -2.5}) == "yes"  # a log may be negative
    assert identified("E", {"low": 0.9, "high": 1.0}, ["flat"]).startswith("no: flat data")
    assert identified("alpha", {"low": 0.1, "high": 0.4}, ["at_lower_bound"]) == (
        "no: at the lower bound of its search box")


def test_the_fits_do_not_depend_on_the_order_of_the_rows(store):
    """The bootstrap resamples row positions: a study read from its store and from its run table (rows in
    another order) must get the same intervals, or a re-analysis moves CIs by resampling noise alone."""
    from scaling_rec.analysis.report import analyze_family
    from scaling_rec.analysis.results import select_target

    df, _ = load_results(store, warn=False)
    df = df[df["family"] == "hstu"]
    target = select_target(df, "eval/loss", "none")
    runs = [analyze_family(d, target, n_boot=8, seed=1) for d in (df, df.sample(frac=1.0, random_state=5))]
    for r in runs:
        r.pop("_plot")
    assert runs[0] == runs[1]
