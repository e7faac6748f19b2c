"""layers.matmul in bfloat16 (mixed precision) against numpy: the forward, dx and dw from bfloat16-rounded
operands with float32 sums; transpose_copy and transpose_grid; and a CTR model with model.matmul_dtype='bfloat16'."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.ctr_config import default_config, validate
from scaling_rec.errors import ConfigError
from scaling_rec.models import ctr
from scaling_rec.models.ctr_common import MLP
from scaling_rec.models.layers import MATMUL_DTYPES, Dense, matmul, transpose_copy, transpose_grid
from scaling_rec.models.registry import build_ctr_model


def bf16_round(a) -> np.ndarray:
    return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.fixture
def operands():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    return (jax.random.normal(k[0], (2, 24, 40)), jax.random.normal(k[1], (40, 16)),
            jax.random.normal(k[2], (2, 24, 16)))


def test_forward_and_gradients_against_numpy(operands):
    x, w, g = operands
    y, vjp = jax.vjp(lambda x, w: matmul(x, w, "bfloat16"), x, w)
    dx, dw = vjp(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32 and y.shape == (2, 24, 16)
    np.testing.assert_allclose(y, bf16_round(x) @ bf16_round(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, bf16_round(g) @ bf16_round(w).T, rtol=1e-5, atol=1e-5)
    x2, g2 = bf16_round(x).reshape(-1, 40), bf16_round(g).reshape(-1, 16)
    np.testing.assert_allclose(dw, x2.T @ g2, rtol=1e-5, atol=1e-5)
    exact_dw = np.asarray(x, np.float64).reshape(-1, 40).T @ np.asarray(g, np.float64).reshape(-1, 16)
    assert np.max(np.abs(np.asarray(dw) - exact_dw)) > 1e-4  # the weight gradient is rounded too
    exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    assert 1e-4 < np.max(np.abs(np.asarray(y) - exact)) < 0.2  # bfloat16 rounding shows, within its 2^-8


@pytest.mark.parametrize("shape", [(48, 40), (7, 12), (9, 11), (11, 13)])
def test_transpose_copy_is_the_transpose_in_both_dtypes(shape):
    """Every branch: the batch split (48 by 8, 9 x 11 by 3), the feature split (7 x 12 by 4), and the plain
    fallback (11 x 13, no factor in either)."""
    a = jax.random.normal(jax.random.PRNGKey(4), shape)
    for dtype in (jnp.float32, jnp.bfloat16):
        out = jax.jit(transpose_copy)(a.astype(dtype))
        assert out.dtype == dtype
        np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(a.astype(dtype), np.float32).T)


def test_bfloat16_weight_gradient_runs_as_a_plain_bfloat16_product():
    """XLA:CPU turns a batch-contracting bfloat16 dot into float32 converts and a float32 dot; through
    transpose_copy the compiled weight gradient is one plain [I, N] x [N, O] dot of bfloat16 operands."""
    if jax.default_backend() != "cpu":
        pytest.skip("the layout rule and the HLO checked here are XLA:CPU's")
    x, w = jnp.ones((64, 40)), jnp.ones((40, 16))
    hlo = jax.jit(jax.grad(lambda w: jnp.sum(matmul(x, w, "bfloat16")))).lower(w).compile().as_text()
    computations = re.findall(r"^%.*? \{\n.*?^\}", hlo, re.M | re.S)
    dots = [c for c in computations if " dot(" in c]
    assert len(dots) == 1, hlo
    header = dots[0].splitlines()[0]
    assert "bf16[40,64]" in header and "bf16[64,16]" in header, header
    assert "lhs_contracting_dims={1}, rhs_contracting_dims={0}" in dots[0]


def test_a_transposed_weight_runs_and_matches_float32():
    """matmul(x, W.T) in bfloat16 (as Wukong's LCB, W [O, I]): XLA would fold the transpose of dw into the dot
    and fail at run time on XLA:CPU without the barrier in the backward."""
    x = jax.random.normal(jax.random.PRNGKey(5), (96, 10))
    w_OxI = jax.random.normal(jax.random.PRNGKey(6), (8, 10))
    grads = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(matmul(x, w.T, "bfloat16"))), argnums=(0, 1)))(x, w_OxI)
    exact = jax.grad(lambda x, w: jnp.sum(jnp.sin(x @ w.T)), argnums=(0, 1))(x, w_OxI)
    for a, b in zip(grads, exact, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.05 * float(jnp.max(jnp.abs(b))))


def test_float32_is_the_plain_product_and_bad_dtypes_are_refused(operands):
    x, w, _ = operands
    assert MATMUL_DTYPES == ctr.MATMUL_DTYPES  # the schema's choices (kept jax-free there) are what layers runs
    np.testing.assert_array_equal(matmul(x, w), x @ w)
    with pytest.raises(ValueError, match="float16"):
        matmul(x, w, "float16")
    with pytest.raises(ValueError, match="matmul_dtype"):
        Dense(4, 4, ("embed", "mlp"), nnx.Rngs(params=0), matmul_dtype="int8")


def test_ctr_model_in_bfloat16_is_close_to_float32():
    """DLRM on a synthetic batch: the same parameters give the loss within bfloat16's rounding and gradients
    pointing the same way (a gradient summed over the batch cancels most of its terms, so the terms'
    ~2^-8 rounding shows as a few per cent of its norm: cosine, not a relative error, is the test); the
    schema accepts only the listed dtypes."""
    c = default_config()
    c.model.family, c.model.mlp_width, c.model.mlp_depth = "dlrm", 64, 2
    cat = jax.random.randint(jax.random.PRNGKey(1), (256, 4), 0, 7)
    label = jax.random.bernoulli(jax.random.PRNGKey(2), 0.3, (256,)).astype(jnp.float32)

    def loss_and_grads(dtype):
        c.model.matmul_dtype = dtype
        model = build_ctr_model(c.model, (7, 7, 7, 7), 0, nnx.Rngs(params=0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(cat, train=True, dropout_key=jax.random.PRNGKey(3))
            return jnp.mean(jnp.logaddexp(0.0, logits) - label * logits)

        return jax.value_and_grad(loss)(params)

    (l32, g32), (l16, g16) = loss_and_grads("float32"), loss_and_grads("bfloat16")
    assert abs(float(l16) - float(l32)) < 2e-3 * abs(float(l32)) and float(l16) != float(l32)
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16), strict=True):
        if float(jnp.linalg.norm(a)) > 1e-6:
            cosine = float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
            assert cosine > 0.99, (a.shape, cosine)
    c.model.matmul_dtype = "float16"
    with pytest.raises(ConfigError, match="matmul_dtype"):
        validate(c)


def test_transpose_grid_matches_numpy_and_dense_views_agree():
    """transpose_grid moves index i * b + j to j * a + i; a Dense fed (b, a)-ordered inputs through in_grid
    (and asked for (b, a)-ordered outputs through out_grid) equals the plain Dense with both reorderings
    done on the activations; an MLP refuses out_grid when its last layer is a normed hidden layer."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 6, 3)).astype(np.float32)
    want = v.reshape(2, 2, 3, 3).swapaxes(1, 2).reshape(2, 6, 3)
    np.testing.assert_array_equal(transpose_grid(jnp.asarray(v), 1, (2, 3)), want)
    with pytest.raises(ValueError, match="grid"):
        transpose_grid(jnp.asarray(v), 1, (4, 2))
    dense = Dense(6, 4, ("embed", "mlp"), nnx.Rngs(0))
    dense.bias[...] = jnp.asarray(rng.normal(size=4), jnp.float32)
    x = jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)
    x_ba = x.reshape(5, 2, 3).swapaxes(1, 2).reshape(5, 6)
    got = dense(x_ba, in_grid=(2, 3), out_grid=(2, 2))
    np.testing.assert_allclose(got, dense(x).reshape(5, 2, 2).swapaxes(1, 2).reshape(5, 4), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="out_grid"):
        MLP(6, 4, 1, 0, nnx.Rngs(0), norm="batch")(x, out_grid=(2, 2))
