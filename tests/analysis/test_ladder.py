"""Fixed-length ladders and the Pareto frontier: planted values, and the report section they feed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_rec.analysis import write_report
from scaling_rec.analysis.isoflop import pareto_frontier
from scaling_rec.analysis.ladder import find_ladders
from scaling_rec.analysis.results import load_results


def test_pareto_frontier_keeps_runs_no_cheaper_run_beats():
    c = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 3.0])
    y = np.array([0.5, 1.0, 0.7, 1.2, 0.8, 0.6])
    fc, fy = pareto_frontier(c, y)
    np.testing.assert_array_equal(fc, [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(fy, [1.0, 0.6, 0.5])


def _ladder_rows(family, d, per_example, values):
    return pd.DataFrame({"family": family, "D": d, "C": np.asarray(per_example) * d,
                         "N": np.asarray(per_example) / 6.0, "size": [f"r{i}" for i in range(len(values))],
                         "value": values})


def test_ladders_are_grouped_by_examples_and_report_slope_and_gain():
    per_ex = [1e4, 1e5, 1e6, 1e7]
    still = 0.5 - 0.02 * np.log10(per_ex)  # falls 0.02 per decade
    flat = [0.45, 0.40, 0.41, 0.42]  # best at r1, larger rungs worse
    df = pd.concat([_ladder_rows("a", 1000.0, per_ex, still), _ladder_rows("a", 3000.0, per_ex, flat),
                    _ladder_rows("a", 9000.0, per_ex[:2], [0.3, 0.2])])  # 2 sizes: not a ladder
    lads = find_ladders(df.reset_index(drop=True), df["value"].to_numpy())
    assert [lad.D for lad in lads] == [1000.0, 3000.0]
    assert lads[0].top_decade_slope == pytest.approx(-0.02) and lads[0].top_decade_rungs == 2
    assert lads[0].last_gain == pytest.approx(0.02) and lads[0].sizes[lads[0].best] == "r3"
    assert lads[1].sizes[lads[1].best] == "r1" and lads[1].last_gain == pytest.approx(-0.02)
    np.testing.assert_allclose(lads[1].per_example, per_ex)


def test_replicates_of_a_size_are_one_rung():
    """Sizes S, M, L with L run twice (2.0, 2.1): the largest rung is their mean, and its gain is over M
    (2.5 − 2.05), not over its own replicate (the rung list once held L twice: gain 2.0 − 2.1 < 0)."""
    df = _ladder_rows("a", 1000.0, [1e4, 1e5, 1e6, 1e6], [3.0, 2.5, 2.0, 2.1]).assign(size=["S", "M", "L", "L"])
    (lad,) = find_ladders(df, df["value"].to_numpy())
    assert lad.sizes == ("S", "M", "L") and lad.runs == (1, 1, 2)
    np.testing.assert_allclose(lad.values, [3.0, 2.5, 2.05])
    assert lad.last_gain == pytest.approx(0.45) and lad.sizes[lad.best] == "L"
    assert lad.to_dict()["runs"] == [1, 1, 2]
    twin = _ladder_rows("a", 1000.0, [1e4, 1e5, 1e5, 1e6], [3.0, 2.5, 2.4, 2.0]).assign(size=["S", "M", "M_h1", "L"])
    twin["N"] = [1.0, 2.0, 2.0, 3.0]  # M and M_h1: one N, two shapes: two rungs, not one averaged
    (lad,) = find_ladders(twin, twin["value"].to_numpy())
    assert lad.sizes == ("S", "M", "M_h1", "L") and lad.runs == (1, 1, 1, 1)


def _write_run(study, run_id, *, n, d, per_ex, loss, size):
    run = study / "runs" / run_id
    run.mkdir(parents=True)
    res = {"status": "ok", "run_id": run_id, "flops_planned": per_ex * d, "flops_spent": per_ex * d, "n_dense": n,
           "n_emb": 100.0, "examples_seen": d, "final_train_loss": loss, "eval": {"test/logloss": loss},
           "family": "wukong"}
    (run / "result.json").write_text(json.dumps(res))
    (run / "config.json").write_text(json.dumps({"study": "s"}))
    specs = study / "sweep" / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "labels": {"size": size}, "config": {}}))


def test_report_has_a_ladder_section_and_pareto_fit(tmp_path):
    """Labels come from the spec files (so runs of another preset, absent from the latest manifest,
    keep theirs); the report fits L(C) on the Pareto frontier and tabulates the ladders."""
    study = tmp_path / "s"
    rng = np.random.default_rng(0)
    for j, d in enumerate((1e4, 4e4, 1.6e5)):
        for i, per_ex in enumerate((1e4, 1e5, 1e6, 1e7)):
            loss = 0.2 + 2.0 * (per_ex * d) ** -0.15 * np.exp(rng.normal(0, 1e-3))
            _write_run(study, f"r{i}e{j}", n=per_ex / 6, d=d, per_ex=per_ex, loss=loss, size=f"wukong/r{i}")
    (study / "sweep" / "manifest.json").write_text(json.dumps({"runs": [{"run_id": "r0e0", "size": "wukong/r0"}]}))
    df, problems = load_results(study)
    assert not problems and set(df["size"]) == {"r0", "r1", "r2", "r3"}
    paths = write_report(study, tmp_path / "report", metric="eval/test/logloss", transform="none", n_boot=0,
                         frontier="pareto")
    fits = json.loads(paths["fits.json"].read_text())["families"]["wukong"]
    assert len(fits["ladders"]) == 3 and all(lad["last_gain"] > 0 for lad in fits["ladders"])
    assert "Pareto frontier" in fits["power_law"]["on"]
    assert fits["power_law"]["fit"]["alpha"] == pytest.approx(0.15, rel=0.1)
    md = paths["report.md"].read_text()
    assert "## Fixed-length ladders" in md and "ladders.png" in paths


def test_budget_frontier_groups_by_planned_budget():
    """A big model overshoots a small budget by up to one expensive step (here 30%): grouped by spent C
    it would form a budget of its own; grouped by the planned budget it stays with its budget."""
    from scaling_rec.analysis.isoflop import compute_frontier

    planned = np.array([1e9, 1e9, 1e9, 1e10, 1e10])
    spent = np.array([1.0e9, 1.01e9, 1.3e9, 1.0e10, 1.02e10])
    y = np.array([0.5, 0.6, 0.4, 0.3, 0.35])
    assert compute_frontier(spent, y)[0].size == 3
    c, best = compute_frontier(spent, y, budgets=planned)
    np.testing.assert_allclose(best, [0.4, 0.3])
    np.testing.assert_allclose(c, [1.01e9, 1.01e10])
