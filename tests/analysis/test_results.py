"""Loading a results store: flattening, identity fields, flags, and corrupted files reported."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from scaling_rec.analysis import load_results, select_target
from scaling_rec.analysis.results import ResultWarning, read_result, split_usable
from scaling_rec.errors import ResultError


def write_run(root: pathlib.Path, run_id: str, result: dict | str | None, config: dict | None = None) -> None:
    """A run directory; result may be a dict, raw text (to corrupt it) or None (unfinished run)."""
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    if isinstance(result, dict):
        (d / "result.json").write_text(json.dumps(result))
    elif isinstance(result, str):
        (d / "result.json").write_text(result)
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))


def result(run_id: str, status: str = "ok", **over) -> dict:
    base = {
        "status": status, "run_id": run_id, "flops_planned": 1e15, "flops_spent": 1.02e15,
        "n_dense": 2e6, "n_emb": 5e6, "examples_seen": 8e7, "final_train_loss": 5.1,
        "eval": {"loss": 5.3, "ndcg@10": 0.12, "test": {"hr@10": 0.2}},
        "wall_time_s": 12.0, "device_kind": "cpu", "num_devices": 1,
    }
    return {**base, **over}


def test_load_flattens_eval_and_reads_identity(tmp_path):
    write_run(tmp_path, "a1", result("a1"), {"model": {"name": "hstu/S"}, "study": "isoflop"})
    write_run(tmp_path, "b2", result("b2", n_dense=4e6), {"model": {"family": "sasrec", "size": "M"}})
    df, problems = load_results(tmp_path)
    assert problems == []
    df = df.set_index("run_id")
    assert df.loc["a1", "family"] == "hstu" and df.loc["a1", "size"] == "S"
    assert df.loc["a1", "study"] == "isoflop"
    assert df.loc["b2", "family"] == "sasrec" and df.loc["b2", "size"] == "M"
    assert df.loc["b2", "study"] == tmp_path.name  # default study: the workdir's name
    assert df.loc["a1", "eval/ndcg@10"] == 0.12 and df.loc["a1", "eval/test/hr@10"] == 0.2
    assert df.loc["a1", "C"] == 1.02e15 and df.loc["a1", "budget"] == 1e15
    assert df.loc["b2", "N"] == 4e6 and df.loc["a1", "D"] == 8e7
    assert df["usable"].all()
    total, _ = load_results(tmp_path, size="n_total")
    assert total.set_index("run_id").loc["a1", "N"] == 7e6


def test_sweep_group_labels_split_one_family_into_groups(tmp_path):
    """A spec file's `group` label (a sweep point's group_label) is the run's family; runs without
    one keep the result's family."""
    arms = {"a1": "hstu (all ratings)", "a2": "hstu (all ratings)", "b1": "hstu (ratings ≥ 4)", "c1": ""}
    (tmp_path / "sweep" / "specs").mkdir(parents=True)
    for rid, group in arms.items():
        write_run(tmp_path, rid, result(rid, family="hstu"))
        labels = {"size": "hstu/S", "family": "hstu", "budget": 0.0, **({"group": group} if group else {})}
        (tmp_path / "sweep" / "specs" / f"{rid}.json").write_text(json.dumps({"run_id": rid, "labels": labels}))
    df, problems = load_results(tmp_path)
    assert problems == []
    family = df.set_index("run_id")["family"].to_dict()
    assert family == {"a1": "hstu (all ratings)", "a2": "hstu (all ratings)", "b1": "hstu (ratings ≥ 4)",
                      "c1": "hstu"}
    assert set(df["model_family"]) == {"hstu"} and set(df["size"]) == {"S"}


def test_corrupted_partial_and_missing_results_are_reported_not_raised(tmp_path):
    write_run(tmp_path, "good", result("good"))
    write_run(tmp_path, "cut", '{"status": "ok", "run_id": "cut", "flops_pl')
    write_run(tmp_path, "list", "[1, 2]")
    partial = result("partial")
    del partial["examples_seen"]
    partial["n_dense"] = "big"
    write_run(tmp_path, "partial", partial)
    write_run(tmp_path, "unfinished", None, {"model": {"name": "hstu/S"}})
    with pytest.warns(ResultWarning):
        df, problems = load_results(tmp_path)
    by_path = {pathlib.Path(p.path).parent.name if p.path.endswith(".json") else pathlib.Path(p.path).name:
               p.reason for p in problems}
    assert set(by_path) == {"cut", "list", "partial", "unfinished"}
    assert "not valid JSON" in by_path["cut"] and "JSON object" in by_path["list"]
    assert "examples_seen" in by_path["partial"] and "not a number" in by_path["partial"]
    assert "no result.json" in by_path["unfinished"]
    assert sorted(df["run_id"]) == ["good", "partial"]
    row = df.set_index("run_id").loc["partial"]
    assert not row["usable"] and "partial result.json" in row["exclude_reason"]


def test_read_result_raises_result_error(tmp_path):
    p = tmp_path / "result.json"
    p.write_text("{not json")
    with pytest.raises(ResultError, match="result.json:1"):
        read_result(p)


def test_diverged_and_failed_runs_kept_but_flagged(tmp_path):
    write_run(tmp_path, "ok", result("ok"))
    write_run(tmp_path, "div", result("div", status="diverged", final_train_loss=float("nan")))
    write_run(tmp_path, "fail", result("fail", status="failed", eval={}))
    df, problems = load_results(tmp_path)
    assert problems == [] and len(df) == 3
    flagged = df.set_index("run_id")["exclude_reason"].to_dict()
    assert flagged == {"ok": "", "div": "status=diverged", "fail": "status=failed"}
    used, excluded = split_usable(df, select_target(df))
    assert list(used["run_id"]) == ["ok"] and sorted(excluded["run_id"]) == ["div", "fail"]


def test_target_choice(tmp_path):
    write_run(tmp_path, "a", result("a"))
    write_run(tmp_path, "b", result("b", eval={"loss": -1.0, "ndcg@10": 0.2}))
    df, _ = load_results(tmp_path)
    t = select_target(df)
    assert t.column == "eval/loss" and t.transform == "none" and "default" in t.reason
    used, excluded = split_usable(df, t)
    assert list(excluded["exclude_reason"]) == ["fitted value non-finite or ≤ 0"]
    t = select_target(df, "eval/ndcg@10")
    assert t.transform == "one_minus" and t.label == "1 − eval/ndcg@10"
    np.testing.assert_allclose(sorted(t.values(df)), [0.8, 0.88])
    assert select_target(df, "eval/ndcg@10", "none").transform == "none"
    t = select_target(df, "eval/ndcg@10", "reciprocal")
    assert t.label == "1 / eval/ndcg@10"
    np.testing.assert_allclose(sorted(t.values(df)), [1 / 0.2, 1 / 0.12])
    with pytest.raises(ValueError, match="reciprocal"):
        select_target(df, "eval/ndcg@10", "log")
    with pytest.raises(ValueError, match="available"):
        select_target(df, "eval/nope")


def test_missing_workdir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_results(tmp_path / "nowhere")


def test_train_loop_format_and_sweep_manifest_labels(tmp_path):
    """result.json as scaling_rec.train writes it (family/study/final_eval_loss at top level,
    eval split/metric keys) and the size labels from <study>/sweep/manifest.json."""
    ev = {"valid/ndcg@10": 0.1, "test/ndcg@10": 0.09}
    write_run(tmp_path, "r1", result("r1", family="sasrec", study="iso", final_eval_loss=4.5, eval=ev, steps=7))
    write_run(tmp_path, "r2", result("r2", family="sasrec", study="iso", final_eval_loss=float("nan"), eval=ev))
    (tmp_path / "sweep").mkdir()
    manifest = {"study": "iso", "runs": [{"run_id": "r1", "size": "sasrec/S", "family": "sasrec", "budget": 1e15}]}
    (tmp_path / "sweep" / "manifest.json").write_text(json.dumps(manifest))
    df, problems = load_results(tmp_path)
    assert problems == []
    r1 = df.set_index("run_id").loc["r1"]
    assert (r1["family"], r1["size"], r1["model_name"], r1["study"]) == ("sasrec", "S", "sasrec/S", "iso")
    assert r1["steps"] == 7 and r1["final_eval_loss"] == 4.5 and r1["eval/test/ndcg@10"] == 0.09
    t = select_target(df)
    assert t.column == "final_eval_loss" and t.transform == "none"
    with pytest.raises(ValueError, match="did you mean eval/valid/ndcg@10 or eval/test/ndcg@10"):
        select_target(df, "eval/ndcg@10")
    nan_only = df.assign(final_eval_loss=float("nan"))
    assert select_target(nan_only).column == "final_train_loss"  # no usable eval loss at all


def test_runs_outside_the_latest_sweep_are_excluded_as_stale(tmp_path):
    """A preset changed after a sweep leaves the old runs in the same study; asked to, the latest manifest
    decides (by default every run counts: presets may share a study on purpose)."""
    for rid in ("new1", "new2", "old1"):
        write_run(tmp_path, rid, result(rid))
    (tmp_path / "sweep").mkdir()
    manifest = {"study": "s", "runs": [{"run_id": "new1"}, {"run_id": "new2"}]}
    (tmp_path / "sweep" / "manifest.json").write_text(json.dumps(manifest))
    df, _ = load_results(tmp_path, latest_sweep_only=True)
    usable = df.set_index("run_id")["usable"].to_dict()
    assert usable == {"new1": True, "new2": True, "old1": False}
    assert "latest sweep" in df.set_index("run_id").loc["old1", "exclude_reason"]
    everything, _ = load_results(tmp_path)
    assert everything["usable"].all()


def test_xent_at_the_calibration_grid_edge_or_with_repeated_history_targets_is_not_fitted(tmp_path):
    """An xent whose temperature is an end of the calibration grid is an upper bound of unknown bias, and one whose
    targets repeat excluded history items is not a proper cross-entropy: both runs are excluded, with reasons."""
    from scaling_rec.calibration import INV_TEMPERATURE_GRID

    edge_t = float(1.0 / INV_TEMPERATURE_GRID[0])
    for rid, valid in (("ok", {"temperature": 2.0, "xent": 5.0}),
                       ("edge", {"temperature": edge_t, "xent": 9.0}),
                       ("repeat", {"temperature": 2.0, "xent": 4.0, "target_in_history": 0.2})):
        write_run(tmp_path, rid, result(rid, eval={"valid": valid, "test": {"xent": valid["xent"]}}))
    df, _ = load_results(tmp_path)
    used, excluded = split_usable(df, select_target(df, "eval/test/xent", "none"))
    assert used["run_id"].tolist() == ["ok"]
    why = dict(zip(excluded["run_id"], excluded["exclude_reason"], strict=True))
    assert "grid's edge" in why["edge"] and "not a proper cross-entropy" in why["repeat"]
