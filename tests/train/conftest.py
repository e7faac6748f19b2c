"""tests/train fixtures: one JAX compilation cache for the package. Most runs here are the tiny config (or TIGER's
tiny one) again, killed, resumed or rerun: each after the first loads its programs instead of compiling them."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests._jax_cache import compilation_cache


@pytest.fixture(scope="package", autouse=True)
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """The cache directory, on in this process for the package; children get it by tests._jax_cache.child_env."""
    with compilation_cache(tmp_path_factory.mktemp("train_jax_cache")) as path:
        yield path
