"""HSTU and SASRec: shapes, finiteness with and without jit, causality, jagged == padded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.config import default_config
from scaling_rec.data.jagged import SequenceExample, pack_jagged, pad_examples
from scaling_rec.kernels.hstu_reference import positions_from_offsets, segment_ids_from_offsets
from scaling_rec.models.registry import build

FAMILIES = ["hstu", "sasrec"]


def _config(family):
    c = default_config()
    c.model.family = family
    c.data.max_len = 16
    c.model.embed_dim, c.model.qk_dim, c.model.v_dim, c.model.num_heads, c.model.ffn_dim = 16, 8, 8, 2, 16
    return c


def _examples(seed=0, lengths=(1, 5, 16, 3, 9)):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ts = np.cumsum(rng.integers(1, 10**5, n)).astype(np.int64)
        out.append(SequenceExample(rng.integers(1, 50, n).astype(np.int32), rng.integers(1, 50, n).astype(np.int32),
                                   ts, ts + 7))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_finite_jit_and_eager(family):
    model = build(_config(family), 50)
    batch = pack_jagged(_examples(), 8, 64)
    eager = model(batch)
    jitted = nnx.jit(lambda m, b: m(b))(model, batch)
    assert eager.shape == (64, 16)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-5)
    assert np.all(np.isfinite(np.asarray(eager)))
    # outputs are L2-normalised at real tokens, zero at padding
    norms = np.linalg.norm(np.asarray(eager), axis=-1)
    real = np.asarray(batch.segment_ids_T) < 8
    np.testing.assert_allclose(norms[real], 1.0, atol=1e-5)
    assert np.all(norms[~real] == 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_jagged_equals_padded(family):
    model = build(_config(family), 50)
    exs = _examples()
    hj = np.asarray(model(pack_jagged(exs, 8, 64)))
    hp = np.asarray(model(pad_examples(exs, 8, 16)))
    off = 0
    for b, e in enumerate(exs):
        np.testing.assert_allclose(hj[off:off + len(e)], hp[b, :len(e)], atol=1e-5)
        off += len(e)


def test_jagged_positions_are_what_the_kernels_derive_from_offsets():
    """HSTU's jagged path passes positions=None to the attention kernels, which derive them from the offsets."""
    batch = pack_jagged(_examples(), 8, 64)
    offsets = jnp.asarray(batch.offsets_B1)
    derived = positions_from_offsets(offsets, segment_ids_from_offsets(offsets, 64))
    np.testing.assert_array_equal(np.asarray(batch.positions_T), np.asarray(derived))


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_future_items_do_not_change_the_past(family):
    """Gradient of the output at position t w.r.t. inputs after t is zero (nanodo-style causality)."""
    model = build(_config(family), 50)
    ex = _examples(lengths=(10,))[0]
    batch = pack_jagged([ex], 2, 16)
    graphdef, state = nnx.split(model)

    def out_at(state, t):
        return jnp.sum(nnx.merge(graphdef, state)(batch)[t])

    t = 4
    grad = jax.grad(out_at)(state, t)["items"]["table"][...]
    later_items = np.unique(ex.items[t + 1:])
    earlier_items = set(ex.items[: t + 1].tolist())
    for item in later_items:
        if item not in earlier_items:
            assert float(jnp.abs(grad[item]).max()) == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_sequences_in_a_pack_do_not_see_each_other(family):
    model = build(_config(family), 50)
    a, b = _examples(lengths=(6, 7))
    alone = np.asarray(model(pack_jagged([b], 4, 32)))[:7]
    packed = np.asarray(model(pack_jagged([a, b], 4, 32)))[6:13]
    np.testing.assert_allclose(alone, packed, atol=1e-5)


def test_dropout_only_with_a_key():
    model = build(_config("hstu"), 50)
    batch = pack_jagged(_examples(), 8, 64)
    a, b = model(batch), model(batch)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = model(batch, dropout_key=jax.random.key(1))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_item_table_padded_for_sharding_but_scoring_sees_items_only():
    model = build(_config("sasrec"), 50)
    assert model.items.table.shape[0] % 64 == 0
    assert model.item_embeddings().shape == (51, 16)


def _bf16_pair():
    models = []
    for dtype in ("float32", "bfloat16"):
        c = _config("hstu")
        c.model.matmul_dtype = dtype
        models.append(build(c, 50))  # the same seed: the same parameters
    return models


def test_hstu_in_bfloat16_is_close_to_float32_and_its_jagged_equals_padded():
    """model.matmul_dtype='bfloat16': the same parameters give per-token outputs within bfloat16's rounding of
    float32's (unit vectors: cosine, not elementwise), and the jagged and padded layouts agree up to the last
    bit of the bfloat16 attention output; the loss is float32's within 1%, its gradients point the same way."""
    from scaling_rec.train.step import make_loss

    m32, m16 = _bf16_pair()
    exs = _examples()
    batch = pack_jagged(exs, 8, 64)
    h32, h16 = np.asarray(m32(batch)), np.asarray(m16(batch))
    real = np.asarray(batch.segment_ids_T) < 8
    cosine = np.sum(h32 * h16, axis=-1)[real]
    assert np.all(cosine > 0.999) and not np.array_equal(h32, h16), cosine.min()
    hp = np.asarray(m16(pad_examples(exs, 8, 16)))
    off = 0
    for b, e in enumerate(exs):
        np.testing.assert_allclose(h16[off:off + len(e)], hp[b, :len(e)], atol=2e-2)
        off += len(e)

    c = _config("hstu")
    results = []
    for model in (m32, m16):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss_fn = make_loss(graphdef, c.train)
        results.append(jax.value_and_grad(lambda p, r=rest, f=loss_fn: f(p, r, batch, jax.random.key(2))[0])(params))
    (l32, g32), (l16, g16) = results
    assert abs(float(l16) - float(l32)) < 1e-2 * abs(float(l32))
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16), strict=True):
        if float(jnp.linalg.norm(a)) > 1e-6:
            cos = float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
            assert cos > 0.98, (a.shape, cos)


def test_hstu_bfloat16_products_are_bfloat16_dots():
    """On XLA:CPU the compiled gradient of a bfloat16 HSTU holds, per block, the projections' forward, dx and dw
    products as dots of bfloat16 operands (6 a block), and the loss's dense scoring adds its own."""
    if jax.default_backend() != "cpu":
        pytest.skip("the HLO checked here is XLA:CPU's")
    import re

    from scaling_rec.train.step import make_loss

    _, m16 = _bf16_pair()
    batch = pack_jagged(_examples(), 8, 64)
    graphdef, params, rest = nnx.split(m16, nnx.Param, ...)
    loss_fn = make_loss(graphdef, _config("hstu").train)
    grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, rest, b, jax.random.key(2))[0]))
    hlo = grad.lower(params, batch).compile().as_text()
    computations = re.findall(r"^%.*? \{\n.*?^\}", hlo, re.M | re.S)  # XLA:CPU wraps each dot in its own
    bf16_dots = [c for c in computations if " dot(" in c and c.splitlines()[0].count("bf16[") == 2]
    assert len(bf16_dots) >= 6 * len(m16.blocks) + 3, len(bf16_dots)


def test_bfloat16_is_for_hstu_only():
    from scaling_rec.config import validate
    from scaling_rec.errors import ConfigError

    c = _config("sasrec")
    c.train.num_steps, c.model.matmul_dtype = 5, "bfloat16"
    with pytest.raises(ConfigError, match="HSTU only"):
        validate(c)
    c.model.family = "hstu"
    validate(c)
