"""A sweep SIGKILLed mid-way and relaunched finishes every run exactly once (local executor).

The sweep runs 3 tiny runs in 2 worker processes (`python -m launch.train`); it is killed as soon as
the first result.json appears, while the other worker is mid-run. The workers die with it
(PR_SET_PDEATHSIG); the relaunch skips the finished run, resumes or restarts the rest, and every run
ends with exactly one complete result and one log record per step; then it writes the report.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from scaling_rec.sweep.store import Store
from tests.sweep.helpers import REPO, TINY, child_env


def _sweep_cmd(workdir, cache) -> list[str]:
    return [sys.executable, "-m", "launch.sweep", f"--config={TINY}:steps", f"--workdir={workdir}",
            "--executor=local", "--workers=2", "--noanalyze", f"--compilation_cache={cache}"]


def test_sigkill_mid_sweep_then_relaunch_runs_everything_exactly_once(tmp_path, jax_cache):
    store = Store(tmp_path / "tiny_study")
    log = (tmp_path / "first.log").open("w")
    sweep = subprocess.Popen(_sweep_cmd(tmp_path, jax_cache), cwd=REPO, env=child_env(), stdout=log, stderr=log)
    deadline = time.time() + 150
    try:
        while not list(store.root.glob("runs/*/result.json")):
            assert sweep.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no result within 150 s"
            time.sleep(0.05)
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    manifest = json.loads((store.sweep_dir / "manifest.json").read_text())
    rids = [r["run_id"] for r in manifest["runs"]]
    finished = {rid: (store.run_dir(rid) / "result.json").read_bytes() for rid in rids if store.is_finished(rid)}
    assert 1 <= len(finished) < len(rids)
    time.sleep(0.5)
    for rid in rids:  # no orphan worker holds a run: every lock can be taken
        with store.lock(rid):
            pass

    relaunch = [a for a in _sweep_cmd(tmp_path, jax_cache) if a != "--noanalyze"]  # and then analyse
    second = subprocess.run(relaunch, cwd=REPO, env=child_env(), text=True, capture_output=True, timeout=170)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(finished)} finished already (skipped)" in second.stderr
    assert second.stderr.count("| start ") + second.stderr.count("| resume ") == len(rids) - len(finished)
    assert sorted(store.list_runs()) == sorted(rids)
    for rid, steps in zip(rids, (3, 4, 5), strict=True):
        result = store.read_result(rid)
        assert result["status"] == "ok" and result["steps"] == steps and result["run_id"] == rid
        if rid in finished:
            assert (store.run_dir(rid) / "result.json").read_bytes() == finished[rid]
        records = [json.loads(line) for line in (store.run_dir(rid) / "metrics.jsonl").read_text().splitlines()]
        train_steps = [r["step"] for r in records if "loss" in r]
        assert train_steps and len(train_steps) == len(set(train_steps)), f"{rid}: duplicate log records {records}"
    assert not list(store.root.rglob("*.tmp"))
    assert "overhead: " in second.stderr
    assert "--n_boot=0" in second.stderr and (store.root / "report" / "report.md").exists()
