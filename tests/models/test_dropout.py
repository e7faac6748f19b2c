"""The hashed dropout mask (layers.dropout): rate, independence, scaling, and shard-by-shard generation; the
hashed uniform integers (layers.hashed_uniform_ints) that draw the sampled-softmax negatives."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_rec.models.layers import dropout, hashed_uniform_bits, hashed_uniform_ints
from tests.parallel._subprocess import child_env

N = 1 << 20  # elements per check: one SE of a rate is <= 0.0005


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.9])
def test_drop_rate_and_inverted_scale(rate):
    x = jnp.full((1024, 1024), 3.0)
    y = np.asarray(dropout(x, rate, jax.random.key(0)))
    kept = y != 0
    se = np.sqrt(rate * (1 - rate) / N)
    assert abs((1 - kept.mean()) - rate) < 5 * se
    np.testing.assert_allclose(y[kept], 3.0 / (1 - rate), rtol=1e-6)


def test_neighbours_and_keys_independent():
    """P(both kept) = keep^2 for neighbours along each axis and for the masks of two keys."""
    rate, keep = 0.3, 0.7
    x = jnp.ones((1024, 1024))
    a = np.asarray(dropout(x, rate, jax.random.key(1))) != 0
    b = np.asarray(dropout(x, rate, jax.random.key(2))) != 0
    se = np.sqrt(keep**2 * (1 - keep**2) / N)
    for both in ((a[:, 1:] & a[:, :-1]).mean(), (a[1:] & a[:-1]).mean(), (a & b).mean()):
        assert abs(both - keep**2) < 5 * se


def test_bits_uniform_per_bit_position():
    words = np.asarray(hashed_uniform_bits(jax.random.key(3), (N,)))
    bits = np.unpackbits(words.view(np.uint8)).reshape(N, 32).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 5 * 0.5 / np.sqrt(N))


def test_uniform_ints_match_numpy_and_are_uniform_and_independent():
    """low + bits % span against numpy on the same words; a chi-square over 3,953 values (the ML-1M item ids)
    within 5 SD of its mean; pairs of neighbours and of two keys uniform over the span^2 cells of a small span."""
    key, low, high = jax.random.key(6), 1, 3954
    ints = np.asarray(hashed_uniform_ints(key, (8192, 128), low, high))
    words = np.asarray(hashed_uniform_bits(key, (8192, 128)))
    np.testing.assert_array_equal(ints, low + (words % (high - low)).astype(np.int64))
    assert ints.dtype == np.int32 and ints.min() == low and ints.max() == high - 1
    span = high - low
    counts = np.bincount(ints.ravel() - low, minlength=span)
    chi2 = ((counts - ints.size / span) ** 2 / (ints.size / span)).sum()
    assert abs(chi2 - (span - 1)) < 5 * np.sqrt(2 * (span - 1))
    small = np.asarray(hashed_uniform_ints(jax.random.key(7), (N,), 0, 7))
    other = np.asarray(hashed_uniform_ints(jax.random.key(8), (N,), 0, 7))
    for a, b in ((small[1:], small[:-1]), (small, other)):
        cells = np.bincount(a * 7 + b, minlength=49)
        chi2 = ((cells - a.size / 49) ** 2 / (a.size / 49)).sum()
        assert abs(chi2 - 48) < 5 * np.sqrt(96)
    with pytest.raises(ValueError, match="values"):
        hashed_uniform_ints(key, (4,), 3, 3)


def test_same_key_same_mask_and_shape_independent_of_layout():
    """The mask is a function of the key and the flat index: (8, 6) and (48,) masks agree element by element."""
    key = jax.random.key(4)
    flat = np.asarray(hashed_uniform_bits(key, (48,)))
    grid = np.asarray(hashed_uniform_bits(key, (8, 6)))
    np.testing.assert_array_equal(flat.reshape(8, 6), grid)
    np.testing.assert_array_equal(grid, np.asarray(hashed_uniform_bits(key, (8, 6))))


def test_identity_without_key_or_rate_and_bad_rate():
    x = jnp.arange(12.0).reshape(3, 4)
    assert dropout(x, 0.5, None) is x
    assert dropout(x, 0.0, jax.random.key(0)) is x
    with pytest.raises(ValueError, match="outside"):
        dropout(x, 1.0, jax.random.key(0))


_SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from scaling_rec.models.layers import dropout
mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "model"))
spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model"))
x = jnp.ones((64, 16))
f = lambda v: dropout(v, 0.4, jax.random.key(5))
one = np.asarray(jax.jit(f)(x))
sharded = np.asarray(jax.jit(f, out_shardings=spec)(jax.device_put(x, spec)))
assert (one == sharded).all() and 0.3 < (one == 0).mean() < 0.5
print("ok")
"""


def test_sharded_mask_matches_one_device():
    """On a 2 x 2 mesh of forced host devices, each shard generates its part of the one-device mask."""
    out = subprocess.run([sys.executable, "-c", _SHARDED], env=child_env(4), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
