"""scaling_rec.analysis.tiger_report on a hand-made benchmark output: one row per checkpoint, the paper's row,
examples and paper share from the steps, the curve flattened; the figure is drawn."""

from __future__ import annotations

import json

import numpy as np

from scaling_rec.analysis.tiger_report import curve_table, load_tiger_benchmarks, plot_tiger, standing_table

PAPER = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}


def _bench() -> dict:
    test = {"recall@5": 0.03, "ndcg@5": 0.02, "recall@10": 0.05, "ndcg@10": 0.03, "recall@10_se": 0.001,
            "ndcg@10_se": 0.0005}
    run = {"steps": 400, "config": {"train": {"batch_size": 256}}, "ids_method": "rqvae", "num_test_users": 100,
           "num_valid_users_in_curve": 50, "eval": {f"test/{k}": v for k, v in test.items()},
           "best": {"step": 200, "test": {**test, "recall@10": 0.06}, "valid": {}},
           "popularity_test": {"recall@10": 0.01},
           "curve": [{"step": s, "examples_seen": 256.0 * s, "valid/ndcg@10": v, "valid/ndcg@10_se": 0.001}
                     for s, v in ((200, 0.04), (400, 0.03))]}
    legacy = {k: v for k, v in run.items() if k not in ("best", "popularity_test")}
    return {"paper": {"TIGER": PAPER}, "machine": {"device_kind": "NVIDIA H200"},
            "runs": {"gpu": run, "old": legacy}}


def test_tables_and_figure(tmp_path) -> None:
    (tmp_path / "tiger_beauty_x.json").write_text(json.dumps(_bench()))
    benches = load_tiger_benchmarks([tmp_path / "tiger_beauty_x.json"])
    t = standing_table(benches)
    assert list(t["checkpoint"]) == ["last", "best", "last", "final"]
    last, best, old, paper = (t.iloc[i] for i in range(4))
    assert last["step"] == 400 and last["examples_seen"] == 102_400 and np.isclose(last["paper_share"], 0.002)
    assert best["step"] == 200 and best["recall@10"] == 0.06 and last["recall@10"] == 0.05
    assert last["popularity_recall@10"] == 0.01 and np.isnan(old["popularity_recall@10"])
    assert paper["recall@10"] == 0.0648 and paper["examples_seen"] == 51_200_000 and paper["paper_share"] == 1.0
    c = curve_table(benches)
    assert len(c) == 4 and list(c["step"][:2]) == [200, 400] and c["valid_users"].iloc[0] == 50
    assert np.isnan(c["recall@10"].iloc[0])  # not recorded in this curve
    fig = plot_tiger(t, c)
    assert len(fig.axes) == 2 and fig.axes[1].get_xscale() == "log"


def test_benchmark_standing_carries_the_best_steps_ses() -> None:
    """benchmarks.tiger_beauty.standing: the best validation step's test metrics come with their SEs."""
    from benchmarks.tiger_beauty import standing

    bench = _bench()
    run = bench["runs"]["gpu"]
    run.update(status="ok", arch={}, examples_seen=102_400, wall_time_s=1.0, final_train_loss=2.0)
    row = standing(bench | {"runs": {"gpu": run}})["gpu"]
    assert row["best_valid_step"] == 200 and row["best_valid_step_recall@10"] == 0.06
    assert row["best_valid_step_ndcg@10_se"] == 0.0005 and row["best_valid_step_recall@10_se"] == 0.001
    assert row["ndcg@10_se"] == 0.0005 and row["best_valid_step_ndcg@5_se"] is None
