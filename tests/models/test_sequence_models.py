"""HSTU and SASRec: shapes, finiteness with and without jit, causality, jagged == padded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.config import default_config
from scaling_rec.data.jagged import SequenceExample, pack_jagged, pad_examples
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
