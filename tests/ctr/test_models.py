"""CTR models: shapes, finiteness, interaction math vs numpy, permutation behaviour, FLOPs vs XLA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec import ctr_config
from scaling_rec.families import CTR_FAMILIES
from scaling_rec.flops import ctr_forward_flops, param_counts
from scaling_rec.models.ctr.dlrm import dot_interaction
from scaling_rec.models.ctr.wukong import (
    UNROLL_MAX,
    WukongLayer,
    linear_compress,
    naive_fm,
    optimized_fm,
    sum_over_axis1,
)
from scaling_rec.models.layers import affine_layer_norm
from scaling_rec.models.registry import build_ctr_model

VOCAB = (11, 7, 5, 9, 13)


def _config(family: str, width: int = 16, **model) -> object:
    c = ctr_config.default_config()
    c.model.family = family
    c.model.embed_dim, c.model.mlp_width, c.model.mlp_depth, c.model.fmb_width = 8, width, 2, width
    c.model.num_fmb, c.model.num_lcb, c.model.fm_rank, c.model.bottom_width = 6, 4, 3, width
    for k, v in model.items():
        c.model[k] = v
    return c


def _inputs(b: int, num_dense: int):
    rng = np.random.default_rng(0)
    cat = jnp.asarray(np.stack([rng.integers(v, size=b) for v in VOCAB], 1), jnp.int32)
    return cat, (jnp.asarray(rng.normal(size=(b, num_dense)), jnp.float32) if num_dense else None)


@pytest.mark.parametrize("family", CTR_FAMILIES)  # every module of scaling_rec/models/ctr/
@pytest.mark.parametrize("num_dense", [0, 3])
def test_shapes_finite_jit_and_eager(family, num_dense):
    model = build_ctr_model(_config(family).model, VOCAB, num_dense, nnx.Rngs(0))
    cat, num = _inputs(16, num_dense)
    graphdef, state = nnx.split(model)
    eager = model(cat, num)
    jitted = jax.jit(lambda s, c, n: nnx.merge(graphdef, s)(c, n))(state, cat, num)
    assert eager.shape == (16,) and bool(jnp.all(jnp.isfinite(eager)))
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)
    train = model(cat, num, train=True, dropout_key=jax.random.key(1))
    assert train.shape == (16,) and bool(jnp.all(jnp.isfinite(train)))
    counts = param_counts(model)
    assert counts.n_emb == sum(VOCAB) * 8 and counts.n_dense > 0


def _field_last(x_BxNxD: np.ndarray) -> jax.Array:
    return jnp.asarray(np.swapaxes(x_BxNxD, 1, 2))


def test_optimized_fm_matches_numpy_and_naive_with_identity():
    """optimized_fm takes X^T [B, d, n] and returns (X X^T Y)^T [B, k, n]."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    y = rng.normal(size=(5, 3)).astype(np.float32)
    want = np.stack([(xb @ (xb.T @ y)).T for xb in x])
    np.testing.assert_allclose(optimized_fm(_field_last(x), jnp.asarray(y)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(optimized_fm(_field_last(x), jnp.eye(5)), naive_fm(_field_last(x)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("width", [4, UNROLL_MAX + 1])
def test_fm_contraction_value_and_gradient_match_numpy(width):
    """Both paths of sum_over_axis1 (unrolled up to UNROLL_MAX terms, einsum past it) and the FM's
    hand-written backward against numpy: d/dX and d/dY of <g, optimized_fm(X^T, Y)>."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, width, 7))
    y, g = rng.normal(size=(7, 5)), rng.normal(size=(3, 5, 7))
    u, v = rng.normal(size=(3, width, 5)), rng.normal(size=(3, width, 7))
    np.testing.assert_allclose(sum_over_axis1(jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32)),
                               np.einsum("bcp,bcq->bpq", u, v), rtol=1e-4, atol=1e-4)
    dx, dy = jax.grad(lambda a, b: jnp.sum(optimized_fm(a, b) * jnp.asarray(g, jnp.float32)), argnums=(0, 1))(
        jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    # f = sum_{b,k,n} g[b,k,n] sum_d (x^T y)[b,d,k] x[b,d,n]
    xty = np.einsum("bdn,nk->bdk", x, y)
    want_dx = np.einsum("bdk,bkn->bdn", xty, g) + np.einsum("bkn,bdn,mk->bdm", g, x, y)
    want_dy = np.einsum("bdm,bkn,bdn->mk", x, g, x)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dy, want_dy, rtol=1e-4, atol=1e-4)


def test_lcb_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    w = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(linear_compress(_field_last(x), jnp.asarray(w)),
                               np.stack([(w @ xb).T for xb in x]), rtol=1e-5, atol=1e-5)


def test_field_permutation_behaviour():
    """FM is permutation-equivariant (P X (P X)^T P Y = P X X^T Y); LCB is invariant once W_L's columns
    follow the fields; DLRM's set of pairwise dots is invariant as a multiset."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)
    xt = jnp.swapaxes(x, 1, 2)
    y = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(optimized_fm(xt[:, :, perm], y[perm]), optimized_fm(xt, y)[:, :, perm], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(linear_compress(xt[:, :, perm], w[:, perm]), linear_compress(xt, w), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.sort(dot_interaction(x[:, perm]), axis=1), np.sort(dot_interaction(x), axis=1),
                               rtol=1e-5, atol=1e-5)


def _paper_layer(layer: WukongLayer, x_BxNxD: jax.Array) -> jax.Array:
    """The module docstring's formulas in the paper's [B, n, d] layout with the layer's parameters (no
    dropout): the reference the field-last WukongLayer must reproduce."""
    b = x_BxNxD.shape[0]
    fm = jnp.einsum("bnd,bmd,mk->bnk", x_BxNxD, x_BxNxD, layer.fm_proj[...]).reshape(b, -1)
    fm = affine_layer_norm(fm, layer.fmb_norm.scale[...], layer.fmb_norm.bias[...], layer.fmb_norm.eps)
    fm = layer.fmb_mlp(fm)  # the plain MLP: no grid views, no folded affine map
    lcb = jnp.einsum("ln,bnd->bld", layer.lcb[...], x_BxNxD)
    res = x_BxNxD if layer.residual is None else jnp.einsum("on,bnd->bod", layer.residual[...], x_BxNxD)
    out = (jnp.concatenate([fm.reshape(b, layer.num_fmb, layer.d), lcb], axis=1) + res).reshape(b, -1)
    if layer.out_norm is not None:
        out = affine_layer_norm(out, layer.out_norm.scale[...], layer.out_norm.bias[...], layer.out_norm.eps)
    else:
        out = affine_layer_norm(out, layer.out_scale[...], None, layer.out_norm_eps)
    return out.reshape(b, layer.n_out, layer.d)


@pytest.mark.parametrize("n_in,out_bias", [(5, True), (7, False)])
def test_field_last_layer_matches_the_paper_layout(n_in, out_bias):
    """WukongLayer on X^T [B, d, n] equals the [B, n, d] formulas with the same parameters, forward and
    every parameter's gradient (the transpose_grid views and the merged projection are exact)."""
    layer = WukongLayer(n_in, 4, num_fmb=3, num_lcb=2, rank=3, fmb_width=8, fmb_depth=1, dropout_rate=0.0,
                        rngs=nnx.Rngs(0), out_bias=out_bias)
    rng = np.random.default_rng(4)
    for _, p in nnx.iter_graph(layer):  # non-trivial norm parameters, so that a mis-ordered view shows
        if isinstance(p, nnx.Param) and p[...].ndim == 1:
            p[...] = jnp.asarray(rng.normal(size=p[...].shape), jnp.float32)
    x = jnp.asarray(rng.normal(size=(6, n_in, 4)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(6, 5, 4)), jnp.float32)
    graphdef, params = nnx.split(layer, nnx.Param)

    def loss(p, fn):
        return jnp.sum(fn(nnx.merge(graphdef, p), x) * g)

    field_last = lambda m, xx: jnp.swapaxes(m(jnp.swapaxes(xx, 1, 2)), 1, 2)  # noqa: E731
    np.testing.assert_allclose(field_last(layer, x), _paper_layer(layer, x), rtol=1e-4, atol=1e-4)
    got, want = jax.grad(loss)(params, field_last), jax.grad(loss)(params, _paper_layer)
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves_with_path(want),
                                 strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("norm,num_dense", [("batch", 0), ("layer", 3)])
def test_wukong_model_matches_the_paper_layout(norm, num_dense):
    """The whole model (field-last layers, the last norm's affine map folded into the top MLP) equals the
    [B, n, d] layers followed by the plain top MLP, in evaluation mode, with every norm parameter moved off
    its initial value."""
    model = build_ctr_model(_config("wukong", 16, norm=norm, num_layers=3).model, VOCAB, num_dense, nnx.Rngs(0))
    rng = np.random.default_rng(5)
    for _, p in nnx.iter_graph(model):
        if isinstance(p, nnx.Param) and p[...].ndim == 1:
            p[...] = jnp.asarray(rng.normal(size=p[...].shape), jnp.float32)
    cat, num = _inputs(8, num_dense)
    x = model.embedding(cat)
    if model.bottom is not None:
        x = jnp.concatenate([x, jax.nn.relu(model.bottom(num))[:, None, :]], axis=1)
    for layer in model.layers:
        x = _paper_layer(layer, x)
    want = model.top(x.reshape(x.shape[0], -1))[:, 0]
    np.testing.assert_allclose(model(cat, num), want, rtol=1e-4, atol=1e-4)


FLOP_CASES = [
    ("wukong", 0, {}), ("wukong", 3, {"num_layers": 3, "num_fmb": 8, "num_lcb": 8, "fm_rank": 4}),
    ("wukong", 0, {"num_fmb": 3, "num_lcb": 2, "fmb_depth": 2, "norm": "layer"}),
    ("dlrm", 0, {}), ("dlrm", 4, {"interaction": "cat", "norm": "none"}),
    ("dcnv2", 0, {}), ("dcnv2", 4, {"cross_rank": 8, "cross_layers": 2}),
]


@pytest.mark.parametrize("family,num_dense,overrides", FLOP_CASES)
def test_forward_flops_match_xla(family, num_dense, overrides):
    """Analytic FLOPs (matrix products only) vs XLA's count for the jitted eval forward.

    Tolerance 5%: XLA also counts element-wise work (bias adds, ReLU, layer/batch norm, the FM's and
    cross layer's products), O(width) per layer against O(width^2) for the matmuls; at MLP width 256
    it adds 0.4-3.3% (Wukong's two layer norms per layer are the largest share; at width 16 it
    would be ~15%, so the test uses realistic widths). The analytic count must never exceed XLA's.
    """
    model = build_ctr_model(_config(family, 256, **overrides).model, VOCAB, num_dense, nnx.Rngs(0))
    b = 32
    cat, num = _inputs(b, num_dense)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, c, n: nnx.merge(graphdef, s)(c, n))
    cost = fn.lower(state, cat, num).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla, ours = cost["flops"] / b, ctr_forward_flops(_config(family, 256, **overrides).model, len(VOCAB), num_dense)
    assert ours <= xla * 1.001, f"{family}: analytic {ours:.0f} > XLA {xla:.0f} FLOPs/example"
    assert xla / ours - 1 < 0.05, f"{family}: XLA {xla:.0f} vs analytic {ours:.0f} FLOPs/example"
