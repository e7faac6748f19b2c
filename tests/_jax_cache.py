"""A JAX persistent compilation cache for a block of tests: runs of equal shapes compile once."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

import jax
import pytest

_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def compilation_cache(path: str | os.PathLike) -> Iterator[str | os.PathLike]:
    """The cache on in `path` (scaling_rec.train.run.enable_compilation_cache) for the block; afterwards the
    previous settings and a fresh in-memory cache handle, so later tests compile as they would alone."""
    from jax._src import compilation_cache as jax_cache

    from scaling_rec.train.run import enable_compilation_cache

    before = {name: getattr(jax.config, name) for name in _SETTINGS}
    enable_compilation_cache(path)
    jax_cache.reset_cache()
    try:
        yield path
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        jax_cache.reset_cache()


def child_env(path: str | os.PathLike) -> dict[str, str]:
    """Environment variables that turn the same cache on in a child process (every program cached, as above)."""
    return {"JAX_COMPILATION_CACHE_DIR": str(path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="package", autouse=True)
def package_jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A package's cache, on in this process for the package (a conftest imports this fixture) and passed to its
    children by `child_env`: for packages whose runs repeat the same tiny shapes (killed, resumed, rerun)."""
    with compilation_cache(tmp_path_factory.mktemp("jax_cache")) as path:
        yield path
