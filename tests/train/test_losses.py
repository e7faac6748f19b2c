"""Training losses vs plain-numpy references, and their analytic FLOPs vs XLA's count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_rec.config import default_config
from scaling_rec.flops import loss_flops, scored_per_target
from scaling_rec.models.layers import hashed_uniform_ints
from scaling_rec.train import losses
from scaling_rec.train.losses import (
    CPU_DENSE_CHUNK,
    CPU_GATHER_CHUNK,
    default_scoring,
    full_softmax_loss,
    live_chunks,
    sampled_softmax_loss,
)


def _inputs(n=7, v=13, d=5, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(n, d)).astype(np.float32)
    table = rng.normal(size=(v, d)).astype(np.float32)
    targets = rng.integers(1, v, size=n).astype(np.int32)
    targets[2] = 0  # a token without a target
    return hidden, targets, table


def test_full_softmax_matches_numpy():
    hidden, targets, table = _inputs()
    tau = 0.3
    loss_sum, count = full_softmax_loss(jnp.asarray(hidden), jnp.asarray(targets), jnp.asarray(table), temperature=tau)
    logits = hidden @ table[1:].T / tau  # row 0 (padding) is never a class
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    per_token = lse - logits[np.arange(len(targets)), np.maximum(targets - 1, 0)]
    keep = targets > 0
    np.testing.assert_allclose(float(loss_sum), per_token[keep].sum(), rtol=1e-5)
    assert float(count) == keep.sum()


def test_sampled_softmax_with_every_item_as_negative_bounds_the_full_softmax():
    """With far more uniform negatives than items every non-target item is drawn, and masking the
    target's duplicates leaves each appearing many times: the sampled loss then exceeds the full one
    (extra copies only add mass), and both agree on which tokens count."""
    hidden, targets, table = _inputs()
    full, n_full = full_softmax_loss(jnp.asarray(hidden), jnp.asarray(targets), jnp.asarray(table), temperature=1.0)
    sampled, n_s = sampled_softmax_loss(jnp.asarray(hidden), jnp.asarray(targets), jnp.asarray(table),
                                        jax.random.key(0), num_negatives=400, temperature=1.0)
    assert float(n_full) == float(n_s) and float(sampled) > float(full)


def test_sampled_softmax_dense_logits_equal_gathered_ones():
    """Scoring the negatives by the full logits matrix gives the gathered path's loss and gradients."""
    hidden, targets, table = (jnp.asarray(x) for x in _inputs(n=9, v=40, d=6))

    def loss(h, w, dense):
        return sampled_softmax_loss(h, targets, w, jax.random.key(3), num_negatives=16, temperature=0.1,
                                    dense_logits=dense)[0]

    dense = jax.value_and_grad(loss, argnums=(0, 1))(hidden, table, True)
    gathered = jax.value_and_grad(loss, argnums=(0, 1))(hidden, table, False)
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(gathered), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _assert_same_loss_and_grads(got, want) -> None:
    """(loss, grads) trees equal up to the float32 rounding of differently ordered sums (the dense ways sum over
    D padded to 16), whose terms reach each array's largest entry (~35 for these inputs' gradients)."""
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        scale = max(1.0, float(np.abs(np.asarray(a)).max()))
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6 * scale)


def test_sampled_softmax_chunked_gather_equals_dense():
    """Gathering the negatives' rows a few tokens at a time, or scoring a few tokens' full logits at a time
    (custom gradients, last chunk padded), gives the dense path's loss and gradients; dense_logits=None (on
    CPU the chunked dense path for this small table) too."""
    hidden, targets, table = (jnp.asarray(x) for x in _inputs(n=9, v=40, d=6))

    def loss(h, w, dense, chunk):
        return sampled_softmax_loss(h, targets, w, jax.random.key(3), num_negatives=16, temperature=0.1,
                                    dense_logits=dense, chunk=chunk)[0]

    dense = jax.value_and_grad(loss, argnums=(0, 1))(hidden, table, True, None)
    for dense_logits, chunk in ((False, 4), (False, 16), (True, 4), (True, 16), (None, None), (False, None)):
        got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))(hidden, table, dense_logits,
                                                                                       chunk)
        _assert_same_loss_and_grads(got, dense)


def test_chunked_ways_skip_the_trailing_chunks_without_targets():
    """Tokens after the last target (a jagged batch's padding) are never scored: the chunked ways' logits of the
    chunks after live_chunks are zeros (the others the numpy dot products), and the loss and gradients equal
    the dense way's."""
    hidden, targets, table = (jnp.asarray(x) for x in _inputs(n=20, v=40, d=6))
    targets = targets.at[9:].set(0).at[3].set(0)  # last target at token 8: chunks of 4 -> 3 live, 2 skipped
    assert int(live_chunks(targets, 4)) == 3 and int(live_chunks(jnp.zeros(5, jnp.int32), 4)) == 0
    idx = jax.random.randint(jax.random.key(5), (20, 16), 1, 40)
    want = np.einsum("nd,nkd->nk", np.asarray(hidden, np.float64), np.asarray(table, np.float64)[np.asarray(idx)])
    for way in (losses._dense_chunk_dots, losses._gathered_dots):
        got = np.asarray(way(hidden, table, idx, live_chunks(targets, 4), 4))
        np.testing.assert_allclose(got[:12], want[:12], rtol=1e-5, atol=1e-6)
        assert np.all(got[12:] == 0), way.__name__

    def loss(h, w, dense, chunk):
        return sampled_softmax_loss(h, targets, w, jax.random.key(3), num_negatives=16, temperature=0.1,
                                    dense_logits=dense, chunk=chunk)[0]

    dense = jax.value_and_grad(loss, argnums=(0, 1))(hidden, table, True, None)
    for dense_logits in (True, False):
        got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))(hidden, table, dense_logits, 4)
        _assert_same_loss_and_grads(got, dense)


def test_default_scoring_rule():
    """CPU: the ML-1M table (3,953 rows, K = 128) is scored densely in chunks, Beauty's (12,102) gathered in
    chunks; elsewhere dense in one piece up to K·D rows, else gathered in one piece."""
    assert default_scoring(3953, 256, 128, "cpu") == (True, CPU_DENSE_CHUNK)
    assert default_scoring(12102, 64, 128, "cpu") == (False, CPU_GATHER_CHUNK)
    assert default_scoring(40 * 128, 64, 128, "cpu")[0] and not default_scoring(40 * 128 + 1, 64, 128, "cpu")[0]
    assert default_scoring(3953, 256, 128, "gpu") == (True, 0)
    assert default_scoring(128 * 50 + 1, 50, 128, "gpu") == (False, 0)


@pytest.mark.parametrize("share", [3, 4, 9])
def test_shared_negatives_match_numpy(share):
    """share = s: token n is scored against draw n // s of K negatives (the last group short), the target's
    duplicates masked; the value is a plain-numpy sampled softmax over exactly those negatives, and the
    gradients equal the dense path's on the same draws."""
    hidden, targets, table = _inputs(n=9, v=40, d=6)
    n, k, tau, key = len(targets), 16, 0.1, jax.random.key(3)
    neg = np.asarray(hashed_uniform_ints(key, (-(-n // share), k), 1, table.shape[0]))[np.arange(n) // share]
    pos = (hidden * table[targets]).sum(1) / tau
    neg_logits = np.einsum("nd,nkd->nk", hidden, table[neg]) / tau
    neg_logits[neg == targets[:, None]] = -np.inf
    logits = np.concatenate([pos[:, None], neg_logits], axis=1)
    m = logits.max(axis=1, keepdims=True)
    per_token = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))) - pos
    keep = targets > 0

    def loss(h, w, dense):
        return sampled_softmax_loss(h, jnp.asarray(targets), w, key, num_negatives=k, temperature=tau,
                                    dense_logits=dense, share=share)[0]

    shared = jax.value_and_grad(loss, argnums=(0, 1))(jnp.asarray(hidden), jnp.asarray(table), None)
    np.testing.assert_allclose(float(shared[0]), per_token[keep].sum(), rtol=1e-5)
    dense = jax.value_and_grad(loss, argnums=(0, 1))(jnp.asarray(hidden), jnp.asarray(table), True)
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(shared), strict=True):  # summation order only
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_share_one_is_the_per_token_draw_and_share_zero_is_an_error():
    hidden, targets, table = (jnp.asarray(x) for x in _inputs(n=9, v=40, d=6))
    args = dict(num_negatives=16, temperature=0.1)
    a = sampled_softmax_loss(hidden, targets, table, jax.random.key(3), **args)
    b = sampled_softmax_loss(hidden, targets, table, jax.random.key(3), share=1, **args)
    assert float(a[0]) == float(b[0])
    with pytest.raises(ValueError, match="share"):
        sampled_softmax_loss(hidden, targets, table, jax.random.key(3), share=0, **args)


def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


@pytest.mark.parametrize("loss", ["sampled_softmax", "full_softmax"])
def test_loss_flops_match_xla(loss, monkeypatch):
    """2·D FLOPs per scored item (flops.loss_flops) vs XLA's count, which adds the exp/log-sum-exp and
    masking work (a few FLOPs per score). Two parts of the sampled loss that XLA counts but that are
    not scoring work are left out: the random draws (an input of the program here) and the bounds-checked
    gather of the negatives' rows (~1.2 per gathered element on CPU, measured on its own and taken off)."""
    n, v, d = 64, 257, 32
    c = default_config()
    c.model.embed_dim = d
    c.train.loss = loss
    hidden, targets, table = _inputs(n=n, v=v, d=d)
    targets[:] = np.maximum(targets, 1)
    if loss == "full_softmax":
        xla = _xla_flops(lambda h, t, w: full_softmax_loss(h, t, w, temperature=0.05), hidden, targets, table)
    else:
        k = c.train.num_negatives
        negatives = np.asarray(hashed_uniform_ints(jax.random.key(0), (n, k), 1, v))

        def given_negatives(h, t, w, neg):  # the loss with its draws an input of the program
            monkeypatch.setattr(losses, "_draw_negatives", lambda key, shape, num_items: neg)
            return sampled_softmax_loss(h, t, w, jax.random.key(0), num_negatives=k, temperature=0.05,
                                        dense_logits=False)

        xla = _xla_flops(given_negatives, hidden, targets, table, negatives)
        xla -= _xla_flops(lambda w, i: jnp.take(w, i, axis=0), table, np.ones((n, k), np.int32))
    analytic = loss_flops(c.model, n, scored_per_target(c.train, v - 1))
    assert analytic <= xla <= 1.35 * analytic, (analytic, xla)


def _bf16(x: jax.Array) -> jax.Array:
    return x.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("dense_logits,chunk", [(True, 4), (True, None)])
def test_bfloat16_dense_scoring_is_close_to_float32_either_way(dense_logits, chunk):
    """matmul_dtype='bfloat16', chunked or in one piece: loss and gradients are float32's up to bfloat16's
    rounding (the next test checks the logits exactly), and the two ways agree up to summation order."""
    hidden, targets, table = (jnp.asarray(x) for x in _inputs(n=9, v=40, d=6))

    def loss(h, w, dtype, dense, chunk):
        return sampled_softmax_loss(h, targets, w, jax.random.key(3), num_negatives=16, temperature=0.1,
                                    dense_logits=dense, chunk=chunk, matmul_dtype=dtype)[0]

    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3, 4))(hidden, table, "bfloat16",
                                                                                      dense_logits, chunk)
    exact = jax.value_and_grad(loss, argnums=(0, 1))(hidden, table, "float32", True, None)
    assert float(got[0]) != float(exact[0]) and abs(float(got[0]) - float(exact[0])) < 1e-2 * abs(float(exact[0]))
    for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(exact[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0.05, atol=0.05 * float(jnp.max(jnp.abs(b))))
    other = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3, 4))(
        hidden, table, "bfloat16", True, 4 if chunk is None else None)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(other), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_bfloat16_negative_logits_are_the_rounded_operands_float32_ones():
    """The forward of the bfloat16 dense ways: each negative's logit is the float32 dot product of the rounded
    rows (numpy reference), exact up to summation order."""
    from scaling_rec.train.losses import _dense_chunk_dots

    hidden, _, table = (jnp.asarray(x) for x in _inputs(n=9, v=40, d=6))
    idx = jax.random.randint(jax.random.key(5), (9, 16), 1, 40)
    got = _dense_chunk_dots(hidden, table, idx, jnp.asarray(3, jnp.int32), 4, "bfloat16")  # all 3 chunks
    h, w = np.asarray(_bf16(hidden), np.float64), np.asarray(_bf16(table), np.float64)
    want = np.einsum("nd,nkd->nk", h, w[np.asarray(idx)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_bfloat16_full_softmax_and_bad_dtypes():
    hidden, targets, table = (jnp.asarray(x) for x in _inputs())
    got, n = full_softmax_loss(hidden, targets, table, temperature=0.3, matmul_dtype="bfloat16")
    want, n2 = full_softmax_loss(_bf16(hidden), targets, _bf16(table), temperature=0.3)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    assert float(n) == float(n2)
    with pytest.raises(ValueError, match="float16"):
        full_softmax_loss(hidden, targets, table, temperature=0.3, matmul_dtype="float16")
    with pytest.raises(ValueError, match="float16"):
        sampled_softmax_loss(hidden, targets, table, jax.random.key(0), num_negatives=4, temperature=1.0,
                             matmul_dtype="float16")
