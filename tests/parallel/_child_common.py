"""Shared by the parallel tests and their child processes: the tiny run config and how children are started.

Children run with forced host CPU devices (the pytest process has one device), a compilation cache
shared by the session's children, and XLA's CPU backend at optimisation level 0 (LLVM codegen only:
the partitioned programs and their collectives are unchanged; it halves compile time on 2 cores).
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from scaling_rec.config import default_config
from scaling_rec.errors import ConfigError
from tests.parallel._subprocess import REPO, child_env

HERE = pathlib.Path(__file__).resolve().parent
NUM_STEPS = 4
TIGER_ITEMS = 48
CHILD_TIMEOUT_S = 240


def tiny_config(family: str = "hstu") -> ml_collections.ConfigDict:
    """A few-second synthetic run whose mesh fits any device count: mesh.fsdp = -1 (8-way FSDP on 8 devices)."""
    c = default_config()
    c.study = "parallel_tests"
    c.data.name = "synthetic"
    c.data.synthetic_users, c.data.synthetic_items = 96, 120
    c.data.max_len = 16
    c.model.family = family
    c.model.embed_dim, c.model.num_blocks, c.model.num_heads = 32, 1, 2
    c.model.qk_dim, c.model.v_dim, c.model.ffn_dim = 16, 16, 64
    c.model.attention_impl = "xla"
    c.train.batch_size = 16
    c.train.num_steps = NUM_STEPS
    c.train.num_negatives = 16
    c.train.log_every = 1
    c.eval.batch_size, c.eval.max_users, c.eval.ks = 16, 16, (10,)
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.logging.wandb, c.logging.progress = False, False
    return c


def tiny_ctr_config(family: str) -> ml_collections.ConfigDict:
    """A tiny synthetic CTR config (scaling_rec.ctr_config) whose widths split over 8 devices.

    Field cardinalities 23, 15, 11, 7, 3 give 24 + 16 + 12 + 8 + 4 = 64 table rows (with each field's
    OOV row), so the stacked table splits evenly 8 ways.
    """
    from scaling_rec import ctr_config
    from scaling_rec.models import ctr

    c = ctr_config.default_config()
    c.study = "parallel_tests"
    c.data.name, c.data.synthetic_examples, c.data.synthetic_cardinalities = "synthetic", 256, (23, 15, 11, 7, 3)
    c.model.family, c.model.embed_dim = family, 8
    c.model.num_layers, c.model.num_fmb, c.model.num_lcb, c.model.fm_rank = 1, 4, 4, 8
    c.model.fmb_width, c.model.fmb_depth, c.model.mlp_width, c.model.mlp_depth = 32, 1, 64, 2
    c.model.cross_layers = 2
    c.model.update(ctr.get(family).tiny)  # the family's own test shapes (scaling_rec/models/ctr/<family>.py)
    c.train.batch_size, c.train.num_epochs, c.train.num_steps = 16, 0.0, 2
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.logging.wandb, c.logging.progress = False, False
    return c


def tiny_tiger_config(arch: str = "encdec") -> ml_collections.ConfigDict:
    """A tiny TIGER config (scaling_rec.tiger_config) whose widths and token table split over 8 devices.

    With TIGER_ITEMS synthetic items and random 2 x 8 codes (seed 0: a collision token of 4 values) and 26
    user buckets, the shared token table uses 1 + 8 + 8 + 4 + 26 + 1 = 48 rows (padding, codes, users, BOS),
    padded to 64.
    """
    from scaling_rec import tiger_config

    c = tiger_config.default_config()
    c.study = "parallel_tests"
    c.data.max_items = 3
    c.ids.method, c.ids.levels, c.ids.codebook_size = "random", 2, 8
    c.model.update(arch=arch, d_model=32, num_layers=1, num_heads=2, head_dim=16, d_ff=64, user_buckets=26)
    c.train.batch_size = 16
    c.logging.progress = False
    return c


def load_ctr_data(config: ml_collections.ConfigDict):
    from scaling_rec.data.ctr import load_ctr

    return load_ctr(config.data)


def find_run_dir(workdir: pathlib.Path, rid: str) -> pathlib.Path:
    """<workdir>/runs/<rid>, or <workdir>/<study>/runs/<rid> when the loop nests runs by study."""
    for candidate in (workdir / "runs" / rid, *workdir.glob(f"*/runs/{rid}")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no run directory for run {rid} under {workdir}")


def step_losses(run_dir: pathlib.Path) -> dict[int, float]:
    """{step: train loss} from metrics.jsonl (records of several processes agree; the last wins)."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            losses[int(record["step"])] = float(record["loss"])
    return losses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(device_count: int, cache_dir: pathlib.Path, **extra: str) -> dict[str, str]:
    """A child's environment: `device_count` host devices, the shared compilation cache, `extra` variables."""
    e = child_env(device_count, JAX_COMPILATION_CACHE_DIR=str(cache_dir), WANDB_MODE="offline",
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                  **extra)
    e["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
    return e


def start(script: str, args: list[str], child_environment: dict[str, str]) -> subprocess.Popen:
    """Starts tests/parallel/<script> with `args`, capturing its output."""
    return subprocess.Popen([sys.executable, str(HERE / script), *args], env=child_environment, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout_s: float = CHILD_TIMEOUT_S) -> list[dict]:
    """Waits for `procs`; each one's `RESULT {json}` line, or {'error': ..., 'stderr': ...}."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout_s))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        return [{"error": f"timed out after {timeout_s} s", "stderr": ""} for _ in procs]
    results = []
    for (out, err), proc in zip(outputs, procs, strict=True):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        result = json.loads(lines[-1][len("RESULT "):]) if lines else {"error": f"no result (rc={proc.returncode})"}
        if "error" in result:
            result["stderr"] = err[-3000:]
        results.append(result)
    return results


COMPILE_EVENTS: list[str] = []


def record_compiles() -> None:
    """From now on append every compilation event of this process to COMPILE_EVENTS."""
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _secs, **_: COMPILE_EVENTS.append(event) if "compile" in event else None
    )


def config_error(train: Callable, config: ml_collections.ConfigDict, workdir: pathlib.Path, **changes) -> dict:
    """The ConfigError `train(config, workdir)` raises once `changes` ('section__key': value) are set,
    with the compilations it caused (record_compiles must be on) and whether it created workdir."""
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    COMPILE_EVENTS.clear()
    t0 = time.time()
    try:
        train(config, workdir)
    except ConfigError as e:
        error = {"type": type(e).__name__, "message": str(e)}
    else:
        error = None
    return {"error": error, "seconds": time.time() - t0, "compiles": list(COMPILE_EVENTS),
            "workdir_created": workdir.exists()}


def assert_step_matches_one_device(ref: dict, got: dict, table: str, label: str) -> None:
    """One train step on 8 devices (`got`) equals the 1-device step (`ref`): loss rtol 1e-6, every
    gradient |g - g_1dev| <= 1e-5 * max|g_1dev| + 1e-6 * G (G: the largest gradient entry), and the
    embedding table's gradient is not all zero."""
    assert ref["num_devices"] == 1 and got["num_devices"] == 8
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-6)
    assert sorted(got["grads"]) == sorted(ref["grads"]) and np.abs(ref["grads"][table]).max() > 0
    scale = max(np.abs(g).max() for g in ref["grads"].values())
    for name, want in ref["grads"].items():
        atol = 1e-5 * np.abs(want).max() + 1e-6 * scale
        np.testing.assert_allclose(got["grads"][name], want, rtol=0, atol=atol, err_msg=f"{label} {name}")
    assert got["params_unchanged"]  # the step's 'optimiser' only recorded the gradients


def assert_clear_config_errors(errors: dict) -> None:
    """The child's `errors` run: a mesh larger than the 8 devices and a batch of 12 on a data-parallel
    size of 8 raise ConfigError with a message that says so, before any compilation and before the
    run directory exists."""
    assert errors["device_count"] == 8
    mismatch, batch = errors["mesh_mismatch"], errors["batch_not_divisible"]
    assert mismatch["error"]["type"] == batch["error"]["type"] == "ConfigError"
    assert "3 devices, but 8 are available" in mismatch["error"]["message"]
    assert "'train.batch_size' = 12 is not divisible by the data-parallel size" in batch["error"]["message"]
    for e in (mismatch, batch):
        assert e["compiles"] == [] and not e["workdir_created"], e
