"""Sweep-test fixtures: one JAX compilation cache for the session (every tiny run has the same
shapes, so only the first one compiles; children get it through --compilation_cache)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import jax
import pytest


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A persistent compilation cache, on in this process for the session and passed to children."""
    from jax._src import compilation_cache

    from scaling_rec.train.run import enable_compilation_cache
    from tests.sweep.helpers import shared_cache_dir

    path = shared_cache_dir(tmp_path_factory)
    enable_compilation_cache(path)
    yield path
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
