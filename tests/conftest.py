"""Shared test set-up: strict numerics, offline W&B, per-thread malloc heaps, and the real-data location."""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The tests run hundreds of tiny programs, whose threads contend for the one heap of scaling_rec's default host
# memory setting: with glibc's per-thread heaps tests/models + tests/train/test_engine.py took 117-124 s
# against 133-139 s (2-core CPU). tests/test_host_memory.py checks the default in its own subprocesses.
os.environ.setdefault("SCALING_REC_MALLOC", "thread_arenas")
jax.config.update("jax_numpy_rank_promotion", "raise")


def _data_dir() -> pathlib.Path | None:
    env = os.environ.get("SCALING_REC_DATA")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> pathlib.Path:
    """The directory of real datasets; skips the test when it is absent (a user's clone)."""
    d = _data_dir()
    if d is None:
        pytest.skip(
            "real datasets not found: set SCALING_REC_DATA to a directory holding "
            "amazon-beauty-s3rec/, movielens-100k/, ... (see README, 'Data')"
        )
    return d
