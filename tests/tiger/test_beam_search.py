"""Constrained beam search: valid IDs only, exhaustive equivalence at full width, no recompilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_rec.errors import ConfigError
from scaling_rec.models.beam_search import build_prefix_table, make_search, ranks_in_beams
from scaling_rec.models.rqvae import append_collision_token

L, V, D = 3, 8, 6


def _codes(n: int = 40, seed: int = 0) -> np.ndarray:
    raw = np.random.default_rng(seed).integers(0, 4, size=(n, L - 1))
    codes = append_collision_token(raw)
    assert codes.max() < V
    return codes  # unique IDs, last token in [0, max collisions)


def _toy_model(seed: int = 1):
    """logits_t = ctx @ A_t + sum_{s<t} E[s, token_s] @ C_t: depends on the prefix only."""
    k = jax.random.split(jax.random.key(seed), 3)
    params = {"A": jax.random.normal(k[0], (L, D, V)), "E": jax.random.normal(k[1], (L, V, D)),
              "C": jax.random.normal(k[2], (L, D, V))}

    def encode_fn(p, ctx_BxD):
        return p, ctx_BxD

    def logits_fn(context, tokens_BxWxL, t):
        p, ctx_BxD = context
        h = jnp.einsum("bd,dv->bv", ctx_BxD, p["A"][t])[:, None, :]
        for s in range(t):
            h = h + jnp.take(p["E"][s], tokens_BxWxL[:, :, s], axis=0) @ p["C"][t]
        return h

    return params, encode_fn, logits_fn


def _exhaustive(params, encode_fn, logits_fn, ctx, codes) -> np.ndarray:
    """log p(ID) of every item for every example: [B, N]."""
    B, N = ctx.shape[0], codes.shape[0]
    context = encode_fn(params, ctx)
    toks = jnp.broadcast_to(jnp.asarray(codes, jnp.int32)[None], (B, N, L))
    total = jnp.zeros((B, N))
    for t in range(L):
        logp = jax.nn.log_softmax(logits_fn(context, toks, t), axis=-1)
        total = total + jnp.take_along_axis(logp, toks[:, :, t : t + 1], axis=2)[:, :, 0]
    return np.asarray(total)


def test_prefix_table_shape_and_errors() -> None:
    codes = _codes()
    table = build_prefix_table(codes, vocab=V)
    assert table.children.shape[1] == V and table.children[0].max() >= 1
    assert sorted(table.item_of_node[table.item_of_node > 0].tolist()) == list(range(1, 41))
    with pytest.raises(ConfigError, match="share a semantic ID"):
        build_prefix_table(np.array([[0, 1], [0, 1]]))


@pytest.mark.parametrize("beam_width", [4, 10])
def test_no_returned_id_is_invalid(beam_width: int) -> None:
    codes = _codes()
    params, enc, logit = _toy_model()
    table = build_prefix_table(codes, vocab=V)
    search = make_search(enc, logit, batch_size=8, beam_width=beam_width, length=L)
    ctx = jax.random.normal(jax.random.key(2), (8, D))
    items, scores, tokens = search(params, ctx, *table.arrays())
    items, tokens = np.asarray(items), np.asarray(tokens)
    assert ((items >= 1) & (items <= 40)).all()  # 40 items >= beam width: every beam is a real item
    np.testing.assert_array_equal(codes[items - 1], tokens)  # returned tokens are that item's ID
    assert all(len(set(row)) == beam_width for row in items.tolist())  # no duplicates
    assert (np.diff(np.asarray(scores), axis=1) <= 1e-6).all()  # best first


def test_full_width_equals_exhaustive_scoring() -> None:
    codes = _codes(n=30)
    params, enc, logit = _toy_model()
    table = build_prefix_table(codes, vocab=V)
    ctx = jax.random.normal(jax.random.key(3), (6, D))
    search = make_search(enc, logit, batch_size=6, beam_width=32, length=L)
    items, scores, _ = search(params, ctx, *table.arrays())
    items, scores = np.asarray(items), np.asarray(scores)
    full = _exhaustive(params, enc, logit, ctx, codes)
    order = np.argsort(-full, axis=1, kind="stable")
    np.testing.assert_array_equal(items[:, :30], order + 1)
    np.testing.assert_allclose(scores[:, :30], np.take_along_axis(full, order, 1), rtol=1e-5, atol=1e-5)
    assert (items[:, 30:] == 0).all() and np.isneginf(scores[:, 30:]).all()  # only 30 valid IDs exist
    ranks = np.asarray(ranks_in_beams(jnp.asarray(items[:, :10]), jnp.asarray(order[:, 3] + 1)))
    assert (ranks == 3).all()


def test_jitted_search_does_not_recompile_for_same_shape() -> None:
    codes = _codes()
    params, enc, logit = _toy_model()
    table = build_prefix_table(codes, vocab=V)
    search = make_search(enc, logit, batch_size=4, beam_width=5, length=L)
    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        children, item_of_node = table.arrays()
        for seed in range(3):
            ctx = jax.random.normal(jax.random.key(seed), (4, D))
            jax.block_until_ready(search(params, ctx, children, item_of_node))
            if seed == 0:
                first = len(compiles)
        assert first >= 1, "the listener saw no compilation at all"
        assert search._cache_size() == 1
        assert len(compiles) == first, "the search recompiled for a batch of the same shape"
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
