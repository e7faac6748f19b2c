"""Runs the 8-device checks once per session in a child process (the parent has 1 device)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.parallel._subprocess import REPO, child_env

CHILD_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def eight_devices(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """results.json of tests/parallel/_sharded_checks.py, plus the gradients per mesh."""
    out_dir = tmp_path_factory.mktemp("eight_devices")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "parallel" / "_sharded_checks.py"), str(out_dir)],
        env=child_env(8),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(f"8-device child failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    results = json.loads((out_dir / "results.json").read_text())
    results["grads"] = {name: dict(np.load(out_dir / f"grads_{name}.npz")) for name in results["models"]}
    return results
