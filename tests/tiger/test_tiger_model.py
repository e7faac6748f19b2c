"""TIGER model: shapes, causality of the generated tokens, beam scores = teacher-forced log-likelihoods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling_rec.models.beam_search import beam_search, build_prefix_table
from scaling_rec.models.tiger import ARCHS, Tiger, TigerSpec, history_tokens, relative_bucket, repeat_context

VOCAB = (4, 4, 3)
CODES = np.array([[0, 1, 0], [1, 1, 0], [2, 3, 1], [3, 0, 2], [0, 1, 1]])


def _model(arch: str) -> tuple[Tiger, jax.Array]:
    spec = TigerSpec(arch=arch, d_model=16, num_layers=1, num_heads=2, head_dim=8, d_ff=32, dropout=0.1, user_buckets=5,
                     rel_buckets=32, rel_max_distance=128)
    table = np.full((6, 3), -1, np.int32)
    table[1:] = CODES
    hist = history_tokens(table, [np.array([1, 2]), np.array([3, 4, 5, 1])], np.array([7, 8]), VOCAB, 5, 3)
    return Tiger(spec, VOCAB, nnx.Rngs(0)), jnp.asarray(hist)


def test_history_tokens_layout() -> None:
    table = np.full((6, 3), -1, np.int32)
    table[1:] = CODES
    hist = history_tokens(table, [np.array([1, 2])], np.array([7]), VOCAB, 5, 3)
    # [pad x 3, user 1 + 11 + 7 % 5, item 1 tokens (1+0, 1+4+1, 1+8+0), item 2 tokens]
    assert hist.tolist() == [[0, 0, 0, 14, 1, 6, 9, 2, 6, 9]]


def test_relative_buckets_t5() -> None:
    rel = np.arange(-200, 201)
    b = relative_bucket(rel, True, 32, 128)
    assert b.min() == 0 and b.max() == 31 and b[200] == 0 and b[201] == 17
    assert (relative_bucket(rel, False, 32, 128)[201:] == 0).all()  # causal: the future is one bucket


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_causality_and_beam_scores(arch: str) -> None:
    model, hist = _model(arch)
    codes = jnp.asarray(CODES[:2])
    logits = model(hist, codes)
    assert logits.shape == (2, 3, 4) and bool(jnp.all(logits[:, 2, 3] < -1e8))  # position 2 has 3 codes
    assert model(hist, codes, key=jax.random.key(0)).shape == (2, 3, 4)
    # Changing the last target token does not change the logits of any position (teacher forcing shifts).
    other = codes.at[:, 2].set(2)
    np.testing.assert_allclose(model(hist, other), logits, atol=1e-5)
    # Changing token 0 changes positions 1, 2 only.
    moved = model(hist, codes.at[:, 0].set(3))
    np.testing.assert_allclose(moved[:, 0], logits[:, 0], atol=1e-5)
    assert not np.allclose(moved[:, 1], logits[:, 1])
    # Beam search over all 5 items scores each item with its teacher-forced log-likelihood.
    table = build_prefix_table(CODES, vocab=4)
    ctx = repeat_context(model.context(hist), 8)
    items, scores, _ = beam_search(ctx, model.step_logits, *table.arrays(), batch_size=2, beam_width=8, length=3)
    tf = jax.nn.log_softmax(model(jnp.repeat(hist, 5, axis=0), jnp.tile(jnp.asarray(CODES), (2, 1))), axis=-1)
    ll = jnp.take_along_axis(tf, jnp.tile(jnp.asarray(CODES), (2, 1))[:, :, None], 2)[:, :, 0].sum(1).reshape(2, 5)
    for b in range(2):
        np.testing.assert_allclose(np.asarray(scores[b, :5]), np.asarray(ll[b])[np.asarray(items[b, :5]) - 1],
                                   rtol=1e-4, atol=1e-4)
        assert sorted(np.asarray(items[b, :5]).tolist()) == [1, 2, 3, 4, 5]
