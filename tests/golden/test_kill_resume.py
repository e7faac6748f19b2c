"""kill -9 and resume, for every family: the golden tiny run, killed with SIGKILL after its first checkpoint and
rerun, ends with exactly its pinned losses, metrics and result fields (golden_values.json).

One engine (scaling_rec/train/engine.py) runs every family, so this is one test over scaling_rec.families; a
new family is covered as soon as its golden values are recorded.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests._jax_cache import child_env
from tests.golden.runs import FAMILIES, record
from tests.golden.test_golden_runs import GOLDEN, mismatches

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    return [int(p.name) for p in workdir.glob("runs_root/runs/*/ckpt/*") if p.name.isdigit()]


@pytest.mark.parametrize("family", FAMILIES)
def test_sigkill_after_a_checkpoint_then_rerun_ends_with_the_golden_values(family, tmp_path, package_jax_cache):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **child_env(package_jax_cache)}
    child = subprocess.Popen([sys.executable, "-m", "tests.golden._kill_child", family, str(tmp_path)], env=env,
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while not _checkpoint_steps(tmp_path):
            if child.poll() is not None:
                pytest.fail(f"{family}: the child ended before its first checkpoint: "
                            f"{child.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail(f"{family}: no checkpoint within 300 s")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, f"{family}: the child ended before it was killed"
    assert not list(tmp_path.glob("runs_root/runs/*/result.json")), f"{family}: killed after its result"
    killed_at = max(_checkpoint_steps(tmp_path))
    resumed = record(family, tmp_path)
    assert killed_at < max(int(s) for s in resumed["losses"]), family
    golden = GOLDEN[family]
    assert mismatches({"losses": golden["losses"], "result": golden["result"]}, resumed) == [], family
