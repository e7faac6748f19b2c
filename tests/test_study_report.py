"""benchmarks.study_report: a study's report, run table and provenance written in one command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

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
