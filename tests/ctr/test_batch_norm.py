"""The fused batch norm + ReLU + dropout op against a plain numpy reference and against autodiff of the
three separate ops (values, batch moments, all three gradients), and the MLP's train path through it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.models.ctr_common import MLP, batch_moments, bn_relu_dropout
from scaling_rec.models.layers import KeyChain, dropout, hashed_uniform_bits

EPS = 1e-5


def separate_ops(x, scale, bias, key, rate):
    """The three ops as BatchNorm.__call__, jax.nn.relu and layers.dropout compute them."""
    mean, var = batch_moments(x)
    y = (x - mean[None, :]) * jax.lax.rsqrt(var + EPS)[None, :] * scale[None, :] + bias[None, :]
    return dropout(jax.nn.relu(y), rate, key), mean, var


def numpy_forward(x, scale, bias, keep, rate):
    x = np.asarray(x, np.float64)
    mean, var = x.mean(0), x.var(0)
    y = np.maximum((x - mean) / np.sqrt(var + EPS) * scale + bias, 0.0)
    return np.where(keep, y / (1.0 - rate), 0.0), mean, var


@pytest.fixture
def inputs():
    k = jax.random.split(jax.random.PRNGKey(3), 5)
    x = 2.0 * jax.random.normal(k[0], (96, 24)) + 0.5
    scale = 1.0 + 0.3 * jax.random.normal(k[1], (24,))
    bias = 0.5 * jax.random.normal(k[2], (24,))
    weights = jax.random.normal(k[3], (96, 24))
    return x, scale, bias, weights, k[4]


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_forward_matches_numpy(inputs, rate):
    x, scale, bias, _, key = inputs
    keep = np.asarray(hashed_uniform_bits(key, x.shape)) >= round(rate * 2**32)
    y, mean, var = bn_relu_dropout(x, scale, bias, key, rate, EPS)
    y_ref, mean_ref, var_ref = numpy_forward(x, np.asarray(scale), np.asarray(bias), keep, rate)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, var_ref, rtol=1e-5)
    if rate:
        assert 0.2 < float(np.mean(np.asarray(y) == 0.0)) < 0.8  # the mask and ReLU both zero elements


@pytest.mark.parametrize("rate,with_key", [(0.0, False), (0.0, True), (0.4, True)])
def test_gradients_match_autodiff_of_separate_ops(inputs, rate, with_key):
    x, scale, bias, weights, key = inputs
    key = key if with_key else None

    def loss(fn):
        return lambda x, s, b: jnp.sum(fn(x, s, b, key, rate)[0] * weights)

    fused = jax.grad(loss(lambda *a: bn_relu_dropout(*a, EPS)), argnums=(0, 1, 2))(x, scale, bias)
    plain = jax.grad(loss(separate_ops), argnums=(0, 1, 2))(x, scale, bias)
    for name, got, want in zip(("dx", "dscale", "dbias"), fused, plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    assert float(jnp.max(jnp.abs(fused[0]))) > 0.0


def test_mlp_train_path_equals_separate_ops():
    """MLP(norm='batch').__call__ in training (the fused op): output, updated running statistics and input
    gradient as the unfused BatchNorm -> ReLU -> dropout chain gives them."""
    graphdef, state = nnx.split(MLP(12, 32, 2, 1, nnx.Rngs(params=0), norm="batch", dropout_rate=0.25))
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 12))
    key = jax.random.PRNGKey(7)

    def fused(model, x):
        return model(x, train=True, keys=KeyChain(key))

    def separate(model, x):
        keys, h = KeyChain(key), x
        for i, layer in enumerate(model.layers):
            h = layer(h)
            if i < model.depth:
                h = dropout(jax.nn.relu(model.norms[i](h, True)), model.dropout_rate, keys.next())
        return h

    def run(forward):
        model = nnx.merge(graphdef, state, copy=True)
        y = forward(model, x)
        dx = jax.grad(lambda x: jnp.sum(forward(nnx.merge(graphdef, state, copy=True), x) ** 2))(x)
        return y, dx, [np.asarray(n.var[...]) for n in model.norms]

    (y_f, dx_f, var_f), (y_p, dx_p, var_p) = run(fused), run(separate)
    np.testing.assert_allclose(y_f, y_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx_f, dx_p, rtol=1e-4, atol=1e-6)
    for a, b in zip(var_f, var_p, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
        assert not np.allclose(a, 1.0)  # the running variance moved from its initial value
