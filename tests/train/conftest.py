"""tests/train fixtures: one JAX compilation cache for the package. Most runs here are the tiny config (or TIGER's
tiny one) again, killed, resumed or rerun: each after the first loads its programs instead of compiling them."""

from tests._jax_cache import package_jax_cache  # noqa: F401  (a fixture: pytest finds it here)
