"""The results store: statuses, spec round trip, the run lock (released when its holder dies)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from scaling_rec.errors import RunBusyError
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import expand, load_experiment
from scaling_rec.sweep.store import Store, read_spec
from tests.sweep.helpers import REPO, TINY


def _spec():
    return expand(load_experiment(TINY).get_config(), [{"train.num_steps": 2}])[0]


def test_status_follows_the_run_directory(tmp_path):
    store, spec = Store(tmp_path), _spec()
    assert store.status(spec.run_id) == "pending" and store.list_runs() == []
    store.run_dir(spec.run_id).mkdir(parents=True)
    assert store.status(spec.run_id) == "partial"
    for status in ("failed", "diverged", "ok"):
        atomic_write_json(store.run_dir(spec.run_id) / "result.json", {"status": status})
        assert store.status(spec.run_id) == status
    assert store.is_finished(spec.run_id) and store.list_runs() == [spec.run_id]
    assert not list(tmp_path.rglob("*.tmp"))


def test_spec_files_round_trip_to_the_same_run(tmp_path):
    store, spec = Store(tmp_path), _spec()
    config, labels = read_spec(store.write_spec(spec))
    assert config.to_dict() == spec.config.to_dict() and labels == spec.labels
    d = json.loads(store.spec_path(spec.run_id).read_text())
    d["config"]["model"]["num_blockz"] = 3
    store.spec_path(spec.run_id).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="num_blocks"):
        read_spec(store.spec_path(spec.run_id))


def test_lock_is_exclusive_and_released_when_the_holder_is_killed(tmp_path):
    store, rid = Store(tmp_path), "abc123"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from scaling_rec.sweep.store import Store\n"
         f"with Store({str(tmp_path)!r}).lock('abc123'):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
            with store.lock(rid):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    with store.lock(rid):
        pass


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """A result file gets the mode open() would give it (0666 less the umask), and a replaced file keeps its
    mode; mkstemp alone leaves 0600."""
    from scaling_rec import io

    fresh = tmp_path / "fresh.json"
    atomic_write_json(fresh, {"a": 1})
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~io._UMASK
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    atomic_write_json(kept, {"b": 2})
    assert kept.stat().st_mode & 0o777 == 0o640
    assert json.loads(kept.read_text()) == {"b": 2}


def test_stale_sweep_temps_are_removed_and_young_ones_kept(tmp_path):
    """A runner killed between writing and renaming leaves '.<name>.<rand>.tmp'; the next sweep start deletes
    those older than STALE_TEMP_S in sweep/ and sweep/specs/, and keeps a younger one (maybe a live write of
    another runner on the same study) and every real file."""
    import os

    from scaling_rec.sweep import store as store_module

    store = Store(tmp_path)
    (store.sweep_dir / "specs").mkdir(parents=True)
    old = [store.sweep_dir / ".status.json.a1.tmp", store.sweep_dir / "specs" / ".r1.json.b2.tmp"]
    young = store.sweep_dir / ".manifest.json.c3.tmp"
    real = store.sweep_dir / "status.json"
    for p in (*old, young, real):
        p.write_text("{}")
    past = time.time() - store_module.STALE_TEMP_S - 5
    for p in old:
        os.utime(p, (past, past))
    assert store.remove_stale_temps() == ["sweep/.status.json.a1.tmp", "sweep/specs/.r1.json.b2.tmp"]
    assert not any(p.exists() for p in old) and young.exists() and real.exists()
    assert Store(tmp_path / "empty").remove_stale_temps() == []
