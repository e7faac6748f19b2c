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
from scaling_rec.models.ctr.wukong import linear_compress, naive_fm, optimized_fm
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


def test_optimized_fm_matches_numpy_and_naive_with_identity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    y = rng.normal(size=(5, 3)).astype(np.float32)
    want = np.stack([xb @ (xb.T @ y) for xb in x])
    np.testing.assert_allclose(optimized_fm(jnp.asarray(x), jnp.asarray(y)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(optimized_fm(jnp.asarray(x), jnp.eye(5)), naive_fm(jnp.asarray(x)), rtol=1e-5,
                               atol=1e-5)


def test_lcb_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    w = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(linear_compress(jnp.asarray(x), jnp.asarray(w)), np.stack([w @ xb for xb in x]),
                               rtol=1e-5, atol=1e-5)


def test_field_permutation_behaviour():
    """FM is permutation-equivariant (P X (P X)^T P Y = P X X^T Y); LCB is invariant once W_L's columns
    follow the fields; DLRM's set of pairwise dots is invariant as a multiset."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(optimized_fm(x[:, perm], y[perm]), optimized_fm(x, y)[:, perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(linear_compress(x[:, perm], w[:, perm]), linear_compress(x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.sort(dot_interaction(x[:, perm]), axis=1), np.sort(dot_interaction(x), axis=1),
                               rtol=1e-5, atol=1e-5)


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
