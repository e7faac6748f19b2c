"""benchmarks.study_report: a study's report, run table and provenance written in one command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.analysis.test_report import ROOT, make_store


def test_study_report_writes_report_runs_and_provenance(tmp_path):
    study = make_store(tmp_path / "store")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.study_report", "--config=tests/sweep/tiny_study.py:steps",
           f"--study={study}", f"--out={out}", "--analysis_flags=n_boot=0,metric=eval/loss"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"report.md", "fits.json", "runs.csv", "provenance.json"} <= {p.name for p in out.iterdir()}
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 25 and {"run_id", "family", "C", "N", "D", "eval/loss"} <= set(rows[0])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["analysis"] == {"n_boot": "0", "metric": "eval/loss"} and prov["git_commit"] and prov["num_runs"] == 25
    assert "benchmarks.study_report" in prov["command"]


def _fits(path):
    """fits.json less its source and the store's unreadable results (a table has no such rows)."""
    fits = json.loads((path / "fits.json").read_text())
    del fits["source"], fits["problems"]
    return fits


def test_a_committed_run_table_refits_to_the_stores_report(tmp_path):
    """--runs_csv: a study whose store is gone is refitted from its committed runs.csv to the same fits as
    its store gives, with the settings of the report that wrote the table, and the provenance names both."""
    from benchmarks.study_report import write_study_report

    study = make_store(tmp_path / "store")
    first, again, inplace = tmp_path / "first", tmp_path / "again", tmp_path / "first"
    overrides = {"metric": "eval/loss", "n_boot": "0"}
    write_study_report("tests/sweep/tiny_study.py:steps", first, study=study, analysis_overrides=overrides)
    table = (first / "runs.csv").read_bytes()
    write_study_report("tests/sweep/tiny_study.py:steps", again, runs_csv=first / "runs.csv")
    assert _fits(again) == _fits(first)  # the table's report's settings (metric eval/loss), not the file's
    assert _fits(again)["studies"] == ["hstu_vs_sasrec"]
    assert json.loads((again / "fits.json").read_text())["source"] == str(first / "runs.csv")
    assert (again / "runs.csv").read_bytes() == table
    prov = json.loads((again / "provenance.json").read_text())
    assert prov["reanalysis_of"]["earlier_provenance"]["sweep_source"] == ""  # the store's report, not this one
    assert len(prov["reanalysis_of"]["sha256"]) == 64 and prov["num_runs"] == 25

    write_study_report("tests/sweep/tiny_study.py:steps", inplace, runs_csv=first / "runs.csv",
                       analysis_overrides=overrides)
    write_study_report("tests/sweep/tiny_study.py:steps", inplace, runs_csv=first / "runs.csv",
                       analysis_overrides=overrides)
    assert (inplace / "runs.csv").read_bytes() == table and _fits(inplace) == _fits(again)
    earlier = json.loads((inplace / "provenance.json").read_text())["reanalysis_of"]["earlier_provenance"]
    assert "--study" not in earlier.get("command", "") and "reanalysis_of" not in earlier  # in-process: no argv
    assert earlier["num_runs"] == 25 and "sweep_source" in earlier


def test_a_table_without_a_study_column_keeps_the_earlier_reports_study_name(tmp_path):
    from benchmarks.study_report import write_study_report

    study = make_store(tmp_path / "store")
    write_study_report("tests/sweep/tiny_study.py:steps", tmp_path / "a", study=study,
                       analysis_overrides={"metric": "eval/loss", "n_boot": "0"})
    old = tmp_path / "old"
    old.mkdir()
    pd.read_csv(tmp_path / "a" / "runs.csv").drop(columns=["study"]).to_csv(old / "runs.csv", index=False)
    (old / "provenance.json").write_text(json.dumps({
        "command": "python -m benchmarks.study_report --config=x.py:p --study=runs/ablations/my_study --out=o",
        "analysis": {"metric": "eval/loss", "n_boot": "0"}}))
    write_study_report("tests/sweep/tiny_study.py:steps", old, runs_csv=old / "runs.csv")
    assert json.loads((old / "fits.json").read_text())["studies"] == ["my_study"]
    assert (old / "report.md").read_text().startswith("# Scaling-law report: my_study")


def test_a_run_table_is_refitted_under_the_current_exclusion_rules(tmp_path):
    """A table written before a rule existed (here: calibration temperatures at the grid's end, usable=True
    in the table) loses those rows on re-analysis."""
    from benchmarks.study_report import write_study_report
    from scaling_rec.calibration import INV_TEMPERATURE_GRID

    study = make_store(tmp_path / "store")
    write_study_report("tests/sweep/tiny_study.py:steps", tmp_path / "a", study=study,
                       analysis_overrides={"metric": "eval/loss", "n_boot": "0"})
    df = pd.read_csv(tmp_path / "a" / "runs.csv")
    df["eval/test/xent"] = df["eval/loss"]
    df["eval/valid/temperature"] = 2.0
    edge = df.index[:3]
    df.loc[edge, "eval/valid/temperature"] = 1.0 / INV_TEMPERATURE_GRID[0]
    (tmp_path / "b").mkdir()
    df.to_csv(tmp_path / "b" / "runs.csv", index=False)
    write_study_report("tests/sweep/tiny_study.py:steps", tmp_path / "c", runs_csv=tmp_path / "b" / "runs.csv",
                       analysis_overrides={"metric": "eval/test/xent", "n_boot": "0"})
    fits = json.loads((tmp_path / "c" / "fits.json").read_text())
    excluded = [r for f in fits["families"].values() for r in f["points"]["excluded"]]
    assert sum("grid's edge" in r["reason"] for r in excluded) == 3


def test_load_run_table_refuses_what_is_not_a_run_table(tmp_path):
    from scaling_rec.analysis import load_run_table
    from scaling_rec.errors import ResultError

    (tmp_path / "a.csv").write_text("run_id,family,C,N,D\nx,hstu,1,2,3\n")
    with pytest.raises(ResultError, match="missing columns.*usable"):
        load_run_table(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("run_id,family,C,N,D,usable\nx,hstu,1,2,3,maybe\n")
    with pytest.raises(ResultError, match="True/False.*maybe"):
        load_run_table(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("run_id,family,C,N,D,usable,exclude_reason\n"
                                    "x,hstu,1,2,3,False,\ny,hstu,1,2,3,True,\n")
    df = load_run_table(tmp_path / "c.csv")
    assert df["usable"].tolist() == [False, True] and df["exclude_reason"].tolist() == ["", ""]


def test_a_known_answer_table_must_match_the_data_the_experiment_declares(tmp_path, monkeypatch):
    """Refitting a known-answer table recomputes the answer from the experiment file; a stored answer for other
    data (the file edited since the study ran) is an error, not a silent comparison with another floor."""
    import benchmarks.known_answer_report as kar

    answer = {"bayes_on_eval_targets": 3.0, "chance": 6.9}
    monkeypatch.setattr(kar, "known_answer", lambda config: dict(answer))
    (tmp_path / "runs.csv").write_text("run_id,family,C,N,D,usable\n")
    (tmp_path / "known_answer.json").write_text(json.dumps({"known_answer": {**answer, "chance": 7.0}}))
    with pytest.raises(ValueError, match="other data"):
        kar.write_known_answer_report("experiments/hstu/known_answer.py:quick", tmp_path / "out",
                                      runs_csv=tmp_path / "runs.csv")
