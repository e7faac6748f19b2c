"""Sweep-test fixtures: one JAX compilation cache for the session (every tiny run has the same
shapes, so only the first one compiles; children get it through --compilation_cache)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests._jax_cache import compilation_cache


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A persistent compilation cache, on in this process for the session and passed to children."""
    from tests.sweep.helpers import shared_cache_dir

    with compilation_cache(shared_cache_dir(tmp_path_factory)) as path:
        yield path
