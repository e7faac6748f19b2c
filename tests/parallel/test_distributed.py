"""Process-group resolution, data slices per process, and a real 2-process gloo run."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys

import jax
import pytest

from scaling_rec.errors import ConfigError
from scaling_rec.parallel import distributed
from scaling_rec.parallel.distributed import first_host, maybe_initialize, process_shard, resolve_process_group
from tests.parallel._subprocess import REPO, child_env

PROCESS_TIMEOUT_S = 120
ENV_KEYS = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "JAX_COORDINATOR_PORT",
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_STEP_NODELIST",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_ID",
)


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("node7", "node7"), ("gpu[003-005,9]", "gpu003"), ("a[1-2],b3", "a1"), ("r[2-3]-n[01-04]", "r2-n01")],
)
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_environment():
    env = {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_JOB_NODELIST": "gpu[11-12]", "SLURM_JOB_ID": "4097"}
    group = resolve_process_group(env=env)
    assert (group.coordinator_address, group.num_processes, group.process_id) == ("gpu11:12001", 4, 2)
    env["SLURM_STEP_NODELIST"], env["JAX_COORDINATOR_PORT"] = "cpu5", "7777"
    assert resolve_process_group(env=env).coordinator_address == "cpu5:7777"


def test_precedence_arguments_then_jax_env_then_slurm():
    env = {
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "2",
        "SLURM_JOB_NODELIST": "gpu1",
        "JAX_PROCESS_ID": "3",
        "JAX_COORDINATOR_ADDRESS": "head:9",
    }
    group = resolve_process_group(process_id=1, env=env)
    assert (group.coordinator_address, group.num_processes, group.process_id) == ("head:9", 4, 1)


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="coordinator"):
        resolve_process_group(num_processes=2, process_id=0, env={})
    with pytest.raises(ConfigError, match="0 <= process_id"):
        resolve_process_group("h:1", 2, 2, env={})
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES"):
        resolve_process_group(env={"JAX_NUM_PROCESSES": "two"})


def test_one_process_is_a_noop(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: pytest.fail("initialize called"))
    assert maybe_initialize().num_processes == 1


def test_initialize_gets_resolved_arguments(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[4-5]")
    calls = []
    monkeypatch.setattr(distributed.jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    maybe_initialize(initialization_timeout_s=5)
    assert calls == [
        dict(
            coordinator_address="n4:12345",
            num_processes=2,
            process_id=1,
            local_device_ids=None,
            initialization_timeout=5,
        )
    ]


@pytest.mark.parametrize(("n", "count"), [(10, 3), (8, 2), (2, 4), (0, 1)])
def test_process_shards_cover_everything_once(n, count):
    slices = [process_shard(n, i, count) for i in range(count)]
    covered = [i for s in slices for i in range(n)[s]]
    assert covered == list(range(n))
    assert max(s.stop - s.start for s in slices) - min(s.stop - s.start for s in slices) <= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(path: pathlib.Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def test_two_processes_on_localhost_with_gloo(tmp_path):
    """2 processes x 4 host devices: a psum and an all-gather that cross processes."""
    port = _free_port()
    paths = [tmp_path / f"result_{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "parallel" / "_distributed_child.py"), str(paths[i])],
            env=child_env(4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=PROCESS_TIMEOUT_S))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"2-process run did not finish in {PROCESS_TIMEOUT_S} s (coordinator 127.0.0.1:{port})")
    results = [_result(path) for path in paths]
    errors = [r["error"] for r in results if r and "error" in r]
    if any("gloo" in e.lower() for e in errors):
        pytest.skip(f"gloo CPU collectives unavailable in this jaxlib: {errors[0]}")
    for (_, err), result in zip(outputs, results, strict=True):
        assert result is not None and "error" not in result, f"{result}\n{err[-3000:]}"
    for pid, result in enumerate(results):
        assert result["process_index"] == pid and result["process_count"] == 2
        assert (result["device_count"], result["local_device_count"]) == (8, 4)
        assert result["global_shape"] == [8]  # two 4-row local batches make one global batch
        assert result["sum"] == result["psum"][0] == sum(range(1, 9))
        assert result["allgather"] == [[0, 0], [1, 10]]
        assert result["collectives"] == "gloo"
        assert result["replicated_offsets"] == [0, 2, 5]  # the same on both processes: replicated
        assert "differs between processes" in result["uneven_rows"]  # was taken as the whole array, silently
