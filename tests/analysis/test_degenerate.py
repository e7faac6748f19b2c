"""Issue 14: runs recorded `degenerate` (collapsed scores) are excluded from the fits with their reason, as
diverged ones are, and a sweep of nothing but such runs identifies nothing."""

from __future__ import annotations

import json
import pathlib

import pytest

from scaling_rec.analysis import load_results, write_report
from scaling_rec.errors import NoUsableRunError
from tests.analysis.test_report import make_store

REASON = ("scores collapsed: at the best step 8's validation, 100% of the score comparisons that rank the "
          "targets are ties (tied_share 1.000 >= 0.5)")


def _degenerate_run(study: pathlib.Path, run_id: str, budget: float, n_dense: float) -> None:
    """A collapsed run as the loops write it: every metric that of a random ranking, its loss ln V."""
    run = study / "runs" / run_id
    run.mkdir(parents=True)
    res = {"status": "degenerate", "degenerate_reason": REASON, "run_id": run_id, "flops_planned": budget,
           "flops_spent": budget, "n_dense": n_dense, "n_emb": 3e6, "examples_seen": budget / (6 * n_dense),
           "final_train_loss": 4.86, "eval": {"loss": 4.86, "ndcg@10": 0.035, "tied_share": 1.0},
           "wall_time_s": 10.0, "device_kind": "cpu", "num_devices": 1}
    (run / "result.json").write_text(json.dumps(res))
    (run / "config.json").write_text(json.dumps({"model": {"name": "hstu/XL"}, "study": "hstu_vs_sasrec"}))


def test_degenerate_run_is_excluded_with_its_reason(tmp_path):
    study = make_store(tmp_path)
    _degenerate_run(study, "hstu-collapsed", 1e17, 1e7)
    df, _ = load_results(study, warn=False)
    row = df.set_index("run_id").loc["hstu-collapsed"]
    assert not row["usable"] and row["exclude_reason"] == f"status=degenerate ({REASON})"
    paths = write_report(df[df["family"] == "hstu"], tmp_path / "out", n_boot=0)
    hstu = json.loads(paths["fits.json"].read_text())["families"]["hstu"]
    assert hstu["points"]["used"] == 12
    assert {"run_id": "hstu-collapsed", "reason": f"status=degenerate ({REASON})"} in hstu["points"]["excluded"]
    assert "status=degenerate (scores collapsed" in paths["report.md"].read_text()


def test_sweep_of_degenerate_runs_fits_and_identifies_nothing(tmp_path):
    study = tmp_path / "collapsed"
    for i, budget in enumerate((1e15, 1e16, 1e17, 1e18)):
        for k, n in enumerate((1e5, 1e6, 1e7)):
            _degenerate_run(study, f"hstu-{i}-{k}", budget, n)
    df, problems = load_results(study, warn=False)
    assert not problems and not df["usable"].any()
    with pytest.raises(NoUsableRunError, match="12x status=degenerate"):  # the report is written first
        write_report(df, tmp_path / "out", n_boot=0)
    s = json.loads((tmp_path / "out" / "fits.json").read_text())["families"]["hstu"]
    assert s["points"]["used"] == 0 and len(s["points"]["excluded"]) == 12
    assert "too few points" in s["chinchilla"]["error"] and "identified" not in s["chinchilla"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "12× status=degenerate (scores collapsed" in md and "identified? " not in md.replace("NOT identified", "")
