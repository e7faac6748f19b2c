"""layers.layer_norm and layers.affine_layer_norm (hand-written backwards) against numpy values and against
autodiff of the plain formula: values and all gradients, with and without a bias, on a rank-3 input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.models.layers import LayerNorm, affine_layer_norm, layer_norm


def autodiff_layer_norm(x, eps):
    """The plain formula, differentiated by JAX."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True) + eps)


def numpy_layer_norm(x, scale, bias, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)


@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_match_autodiff(with_bias):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = 3.0 * jax.random.normal(k[0], (3, 5, 24)) + 1.5
    scale = 1.0 + 0.3 * jax.random.normal(k[1], (24,))
    bias = 0.2 * jax.random.normal(k[2], (24,)) if with_bias else jnp.zeros((24,))
    g = jax.random.normal(k[3], x.shape)

    def ours(x, scale, bias):
        return affine_layer_norm(x, scale, bias if with_bias else None, 1e-6)

    def plain(x, scale, bias):
        return autodiff_layer_norm(x, 1e-6) * scale[None, None, :] + (bias[None, None, :] if with_bias else 0.0)

    y, vjp = jax.vjp(ours, x, scale, bias)
    y_ref, vjp_ref = jax.vjp(plain, x, scale, bias)
    np.testing.assert_allclose(y, numpy_layer_norm(x, scale, bias, 1e-6), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    grads, grads_ref = vjp(g), vjp_ref(g)
    names = ("dx", "dscale", "dbias") if with_bias else ("dx", "dscale")
    for name, a, b in zip(names, grads, grads_ref, strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0.01  # a gradient that is not trivially zero


def test_module_uses_it():
    ln = LayerNorm(8, nnx.Rngs(params=0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
    np.testing.assert_allclose(ln(x), numpy_layer_norm(x, np.ones(8), np.zeros(8), 1e-6), rtol=1e-5, atol=1e-5)


def test_plain_layer_norm_matches_autodiff():
    k = jax.random.split(jax.random.PRNGKey(2), 2)
    x = 2.0 * jax.random.normal(k[0], (4, 6, 32)) - 0.7
    g = jax.random.normal(k[1], x.shape)
    y, vjp = jax.vjp(lambda x: layer_norm(x, 1e-8), x)
    y_ref, vjp_ref = jax.vjp(lambda x: autodiff_layer_norm(x, 1e-8), x)
    np.testing.assert_allclose(y, numpy_layer_norm(x, np.ones(32), np.zeros(32), 1e-8), rtol=1e-5, atol=1e-5)
    (dx,), (dx_ref,) = vjp(g), vjp_ref(g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(dx))) > 0.01
