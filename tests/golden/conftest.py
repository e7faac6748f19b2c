"""Golden-test fixtures: one JAX compilation cache for the package. The kill/resume tests train the golden runs'
shapes twice more (the killed child, then the resumed run), so they reuse what test_golden_runs compiled."""

from tests._jax_cache import package_jax_cache  # noqa: F401  (a fixture: pytest finds it here)
