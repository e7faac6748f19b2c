"""Shared test set-up: strict numerics, offline W&B, and the real-data location."""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
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
