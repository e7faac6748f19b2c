"""Golden-test fixtures: one JAX compilation cache for the package. The kill/resume tests train the golden runs'
shapes twice more (the killed child, then the resumed run), so they reuse what test_golden_runs compiled."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests._jax_cache import compilation_cache


@pytest.fixture(scope="package", autouse=True)
def golden_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """The cache directory, on in this process for the package; children get it by tests._jax_cache.child_env."""
    with compilation_cache(tmp_path_factory.mktemp("golden_jax_cache")) as path:
        yield path
