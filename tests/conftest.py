"""Shared test set-up: strict numerics, offline W&B, glibc's own malloc settings, and the real-data location."""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The test process compiles hundreds of programs; with scaling_rec's retained host memory its resident size
# stays near its peak (4 GB+ over the default set on the 2-core CPU), a risk on a small CI machine, and no
# test here times anything. tests/test_host_memory.py checks the default in its own subprocesses.
os.environ.setdefault("SCALING_REC_MALLOC", "system")
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
