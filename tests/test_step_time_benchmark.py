"""benchmarks/step_time.py's no-regression check (issue 17): the jagged step must not be slower than padded.

The fast tests exercise the pass/fail logic on made-up timing rows; the slow one runs the benchmark itself
(few steps, real Beauty data) and fails when it exits non-zero, i.e. when jagged is slower on any row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import step_time


def _row(name: str, jagged: float, padded: float) -> dict:
    return {"distribution": name, "examples_per_s": {"jagged": jagged, "padded": padded}}


def test_faster_or_equal_jagged_passes():
    rows = [_row("beauty", 1051.0, 180.0), _row("ml1m", 30.0, 30.0)]
    assert step_time.slower_than_padded(rows) == []
    step_time.check_no_regression(rows)


def test_slower_jagged_exits_non_zero_naming_the_row():
    rows = [_row("beauty", 1051.0, 180.0), _row("ml1m", 25.0, 30.0)]
    msgs = step_time.slower_than_padded(rows)
    assert len(msgs) == 1 and msgs[0].startswith("ml1m: jagged 25.0 examples/s < padded 30.0")
    with pytest.raises(SystemExit) as e:
        step_time.check_no_regression(rows)
    assert "REGRESSION" in str(e.value.code) and "ml1m" in str(e.value.code) and "beauty" not in str(e.value.code)


@pytest.mark.slow
def test_benchmark_jagged_not_slower_than_padded(tmp_path, real_data_dir):
    root = os.path.dirname(os.path.dirname(os.path.abspath(step_time.__file__)))
    env = {**os.environ, "SCALING_REC_DATA": str(real_data_dir)}
    r = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--steps=4", "--repeats=1",
                        f"--out={tmp_path}"], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = tmp_path.glob("step_time_*.json")
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 2 and all(row["speedup_jagged_vs_padded"] >= 1.0 for row in rows)
