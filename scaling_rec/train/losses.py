"""Training losses of the sequential retrievers."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from scaling_rec.models.layers import check_matmul_dtype, dot_f32, hashed_uniform_ints, matmul, transpose_copy

# Tokens per chunk when the negatives' rows are gathered chunk by chunk (the default on CPU for a large
# table): a chunk's rows, 16 x K x D floats (2 MB at K = 128, D = 256), stay in cache between the gather and
# the dot. Measured at N = 16k, K = 128, D = 256, V = 3953, loss + gradient: 1.1-1.5 s at 16 tokens against
# 1.9-2.8 s at 32 and 2.5 s at 8 (loaded 2-core CPU).
CPU_GATHER_CHUNK = 16
# On CPU a table of at most CPU_DENSE_MAX_ROWS_PER_NEGATIVE x K rows is scored densely, CPU_DENSE_CHUNK tokens
# at a time (_dense_chunk_dots): V / K times the scoring FLOPs, all in matmuls, against K gathered and
# scatter-added rows per token. Idle 2-core CPU, N = 16k, K = 128, D = 256, V = 3954, loss + gradient:
# 375 ms in chunks of 1024 (377 at 512, 397 at 2048) against 709 ms gathered in chunks of 16; the cost of
# the dense path grows with V, the gathered one's does not, and they meet near V = 55 K (issue 17).
CPU_DENSE_MAX_ROWS_PER_NEGATIVE = 40
CPU_DENSE_CHUNK = 1024
# The dense ways pad D with zero columns to a multiple of SCORING_DIM_MULTIPLE (`_pad_columns`): XLA:CPU's
# [M, K] x [K, D] products (the backward's G · table and G^T · hidden) run ~2.5x slower when D is not a
# multiple of 16, the AVX-512 float32 width (2-core AVX-512 CPU, [1024, 3953] x [3953, D]: 3.9 ms at D = 50,
# 1.6 at 48, 2.1 at 64; 4.6 at 56, 3.8 at 100). Zero columns add nothing to the logits and their
# gradients are dropped. Loss + gradient at N = 16k, V = 3953, K = 128, D = 50: 12% faster (in-process A/B).
SCORING_DIM_MULTIPLE = 16


def sampled_softmax_loss(
    hidden_NxD: jax.Array,
    targets_N: jax.Array,
    table_VxD: jax.Array,
    key: jax.Array,
    *,
    num_negatives: int,
    temperature: float,
    dense_logits: bool | None = None,
    chunk: int | None = None,
    share: int = 1,
    matmul_dtype: str = "float32",
) -> tuple[jax.Array, jax.Array]:
    """Sampled softmax over the target and `num_negatives` uniform negatives per token.

    As in the HSTU reference (SampledSoftmaxLoss with the local sampler): negatives are drawn
    uniformly from items 1..V-1 for every target token; a negative equal to the target is masked;
    logits are dot products / temperature (cosines when embeddings are L2-normalised). The draws are
    layers.hashed_uniform_ints of `key` (a counter hash: threefry's jax.random.randint took ~30-60 ms
    of a CPU step at the reference's ML-1M shapes; the draws changed at 5fd035c).

    Shared negatives (share = s > 1): consecutive tokens in groups of s use one draw of K negatives
    (token n gets draw n // s), so a group's logits are one [s, D] x [D, K] product and the table's
    gradient a scatter of K rows per group instead of per token: s times fewer gathered and scattered
    rows for the same K scored items per token. share = 1 is the reference's per-token draw.

    The negatives' logits come one of four ways, equal up to summation order:
    - gathered: each token's K rows ([N, K, D], whose gradient is a scatter-add of as many rows into
      the table);
    - gathered in chunks of `chunk` tokens (`_gathered_dots`): the same dot products, a loop over
      chunks forward and backward, so that a chunk's rows stay in cache and [N, K, D] never exists;
    - dense: all N x V logits by one matmul and then each token's K of them, V/K times the scoring
      FLOPs (flops.loss_flops counts the K) on matmuls instead of gathers and scatters;
    - dense in chunks of `chunk` tokens (`_dense_chunk_dots`): a chunk's [chunk, V] logits at a time,
      and a backward of two matmuls per chunk, so that [N, V] never exists.
    The chunked ways stop after the last chunk holding a target (`live_chunks`): the trailing padding of a
    jagged batch costs nothing (its logits are zeros, its loss weight zero). The dense ways score D padded
    to a multiple of SCORING_DIM_MULTIPLE with zeros (see there).
    Default (dense_logits=None): on CPU, dense in chunks of CPU_DENSE_CHUNK tokens when the table has at
    most CPU_DENSE_MAX_ROWS_PER_NEGATIVE·K rows, else gathered in chunks of CPU_GATHER_CHUNK tokens;
    elsewhere dense when the table has no more than K·D rows (no more memory than the gathered rows),
    else gathered. On a loaded 2-core CPU, loss + gradient at the HSTU reference's large ML-1M shapes
    (N = 16k tokens, D = 256, V = 3953, K = 128) took 1.1-1.5 s in gathered chunks against 4.1-4.3 s
    dense in one piece (and 13.4 s gathered in one piece); at Beauty-like ones (N = 1.3k, V = 12102)
    0.08-0.15 s against 0.7 s dense (issue 17).

    Args:
      hidden_NxD: user vectors; targets_N: int item ids, 0 = no target (ignored);
      table_VxD: the scoring table (row 0 = padding).
      dense_logits: score the negatives by the full N x V matmul (True), by gathered rows (False), or
        by the rule above (None).
      chunk: tokens per chunk of either way (None or 0: one piece; the default rule sets it).
      share: tokens per draw of negatives (see above); with share > 1 the shared scoring is used unless
        dense_logits is True.
      matmul_dtype: the dense ways' products (MATMUL_DTYPES): 'bfloat16' rounds hidden, table and the logits'
        gradient to bfloat16 and accumulates in float32 (layers.bf16_matmul), forward and backward. The
        gathered ways and the target's logit stay float32.
    Returns:
      (sum of per-token losses, number of target tokens), both float32 scalars.
    """
    n = hidden_NxD.shape[0]
    num_items = table_VxD.shape[0] - 1
    check_matmul_dtype(matmul_dtype)
    if share < 1:
        raise ValueError(f"share = {share}: tokens per draw of negatives must be >= 1")
    pos_logit_N = jnp.sum(hidden_NxD * jnp.take(table_VxD, targets_N, axis=0), axis=-1) / temperature
    if share > 1:
        neg_MxK = _draw_negatives(key, (-(-n // share), num_negatives), num_items)
        neg_NxK = jnp.repeat(neg_MxK, share, axis=0)[:n]
    else:
        neg_NxK = _draw_negatives(key, (n, num_negatives), num_items)
    if share > 1 and not dense_logits:
        h_MxSxD = _chunked(hidden_NxD, share)
        rows_MxKxD = jnp.take(table_VxD, neg_MxK, axis=0)
        neg_logit_NxK = jnp.einsum("msd,mkd->msk", h_MxSxD, rows_MxKxD).reshape(-1, num_negatives)[:n]
        return _softmax_terms(pos_logit_N, neg_logit_NxK / temperature, neg_NxK, targets_N)
    if dense_logits is None:
        dense_logits, default_chunk = default_scoring(table_VxD.shape[0], table_VxD.shape[1], num_negatives,
                                                      jax.default_backend())
        chunk = default_chunk if chunk is None else chunk
    if dense_logits and chunk:
        neg_logit_NxK = _dense_chunk_dots(*_pad_columns(hidden_NxD, table_VxD), neg_NxK,
                                          live_chunks(targets_N, int(chunk)), int(chunk), matmul_dtype) / temperature
    elif dense_logits:
        h_pad, t_pad = _pad_columns(hidden_NxD, table_VxD)
        logits_NxV = matmul(h_pad, t_pad.T, matmul_dtype)
        neg_logit_NxK = jnp.take_along_axis(logits_NxV / temperature, neg_NxK, axis=1)
    elif chunk:
        neg_logit_NxK = _gathered_dots(hidden_NxD, table_VxD, neg_NxK, live_chunks(targets_N, int(chunk)),
                                       int(chunk)) / temperature
    else:
        neg_NxKxD = jnp.take(table_VxD, neg_NxK, axis=0)
        neg_logit_NxK = jnp.einsum("nd,nkd->nk", hidden_NxD, neg_NxKxD) / temperature
    return _softmax_terms(pos_logit_N, neg_logit_NxK, neg_NxK, targets_N)


def _pad_columns(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """[rows, D] arrays with zero columns appended up to a multiple of SCORING_DIM_MULTIPLE (unchanged if D is
    one): the dense scoring's products, equal up to summation order."""
    pad = -xs[0].shape[1] % SCORING_DIM_MULTIPLE
    return xs if not pad else tuple(jnp.pad(x, ((0, 0), (0, pad))) for x in xs)


def _draw_negatives(key: jax.Array, shape: tuple[int, int], num_items: int) -> jax.Array:
    """Item ids uniform on 1..num_items, written out once: the barrier keeps XLA from fusing the hash into
    each consumer (the gathers, the target mask), where it would be recomputed per use."""
    return jax.lax.optimization_barrier(hashed_uniform_ints(key, shape, 1, num_items + 1))


def default_scoring(rows: int, dim: int, num_negatives: int, backend: str) -> tuple[bool, int]:
    """(dense_logits, chunk) sampled_softmax_loss picks for a [rows, dim] table and K negatives per token
    (its docstring gives the rule and the measurements behind it)."""
    if backend == "cpu":
        dense = rows <= CPU_DENSE_MAX_ROWS_PER_NEGATIVE * num_negatives
        return dense, CPU_DENSE_CHUNK if dense else CPU_GATHER_CHUNK
    return rows <= num_negatives * dim, 0


def _dot(a: jax.Array, b: jax.Array, contract: tuple[tuple[int], tuple[int]], dtype: str) -> jax.Array:
    """layers.dot_f32 of a and b with their operands rounded to `dtype`."""
    return dot_f32(a.astype(dtype), b.astype(dtype), contract)


def _softmax_terms(pos_logit_N: jax.Array, neg_logit_NxK: jax.Array, neg_NxK: jax.Array,
                   targets_N: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum over target tokens of logsumexp(pos, negatives) - pos, number of target tokens); a negative
    equal to its token's target is masked."""
    neg_logit_NxK = jnp.where(neg_NxK == targets_N[:, None], -jnp.inf, neg_logit_NxK)
    logits = jnp.concatenate([pos_logit_N[:, None], neg_logit_NxK], axis=1)
    loss_N = jax.nn.logsumexp(logits, axis=1) - pos_logit_N
    weight_N = (targets_N > 0).astype(jnp.float32)
    return jnp.sum(loss_N * weight_N), jnp.sum(weight_N)


def _chunked(x: jax.Array, chunk: int) -> jax.Array:
    """Rows of x [N, ...] zero-padded to a multiple of `chunk` and cut into [N / chunk, chunk, ...]."""
    m = -(-x.shape[0] // chunk)
    x = jnp.pad(x, [(0, m * chunk - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((m, chunk) + x.shape[1:])


def live_chunks(targets_N: jax.Array, chunk: int) -> jax.Array:
    """int32 []: the chunks of `chunk` tokens up to the last one holding a target (targets > 0). The chunked
    ways skip the rest, a jagged batch's trailing padding (13-16% of the token budget at the HSTU reference's
    ML-1M shapes): their logits are zeros and add no gradient (the tokens' loss weights are zero)."""
    last = jnp.max(jnp.where(targets_N > 0, jnp.arange(targets_N.shape[0]), -1))
    return ((last + chunk) // chunk).astype(jnp.int32)


def _scan_live(fn, num_live: jax.Array, carry, xs: tuple[jax.Array, ...], ys: jax.Array):
    """A scan of fn(carry, x[i] for x in xs) -> (carry, y) over i < num_live (a loop of dynamic trip count), y
    written to row i of ys [M, ...] (the other rows keep ys' values); returns (carry, ys)."""

    def body(i, state):
        c, acc = state
        c, y = fn(c, tuple(x[i] for x in xs))
        return c, acc.at[i].set(y)

    return jax.lax.fori_loop(0, num_live, body, (carry, ys))


def _map_live(fn, num_live: jax.Array, xs: tuple[jax.Array, ...], out: jax.Array) -> jax.Array:
    """_scan_live without a carry: out [M, ...] with row i = fn(x[i] for x in xs) for i < num_live."""
    return _scan_live(lambda c, x: (c, fn(x)), num_live, (), xs, out)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _gathered_dots(hidden_NxD: jax.Array, table_VxD: jax.Array, idx_NxK: jax.Array, num_live: jax.Array,
                   chunk: int) -> jax.Array:
    """[N, K] dot products hidden[n] · table[idx[n, k]], `chunk` tokens at a time (a loop over the first
    num_live chunks, `live_chunks`; the others' products are zeros; padding tokens of the last chunk use row 0
    and are dropped)."""

    def one(args):
        h_CxD, i_CxK = args
        return jnp.einsum("nd,nkd->nk", h_CxD, table_VxD[i_CxK])

    i_MxCxK = _chunked(idx_NxK, chunk)
    out = _map_live(one, num_live, (_chunked(hidden_NxD, chunk), i_MxCxK), jnp.zeros(i_MxCxK.shape, hidden_NxD.dtype))
    return out.reshape(-1, idx_NxK.shape[1])[: idx_NxK.shape[0]]


def _gathered_dots_fwd(hidden_NxD, table_VxD, idx_NxK, num_live, chunk):
    out = _gathered_dots(hidden_NxD, table_VxD, idx_NxK, num_live, chunk)
    return out, (hidden_NxD, table_VxD, idx_NxK, num_live)


def _gathered_dots_bwd(chunk, res, g_NxK):
    """Per live chunk: the rows gathered again; d hidden = g · rows, and g ⊗ hidden scatter-added into the
    table's gradient (a loop carry)."""
    hidden_NxD, table_VxD, idx_NxK, num_live = res
    dim = hidden_NxD.shape[1]

    def body(dtable_VxD, args):
        h_CxD, i_CxK, g_CxK = args
        dh_CxD = jnp.einsum("nk,nkd->nd", g_CxK, table_VxD[i_CxK])
        rows = (g_CxK[:, :, None] * h_CxD[:, None, :]).reshape(-1, dim)
        return dtable_VxD.at[i_CxK.reshape(-1)].add(rows), dh_CxD

    h_MxCxD = _chunked(hidden_NxD, chunk)
    dtable_VxD, dh = _scan_live(body, num_live, jnp.zeros_like(table_VxD),
                                (h_MxCxD, _chunked(idx_NxK, chunk), _chunked(g_NxK, chunk)), jnp.zeros_like(h_MxCxD))
    return dh.reshape(-1, dim)[: hidden_NxD.shape[0]], dtable_VxD, None, None


_gathered_dots.defvjp(_gathered_dots_fwd, _gathered_dots_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _dense_chunk_dots(hidden_NxD: jax.Array, table_VxD: jax.Array, idx_NxK: jax.Array, num_live: jax.Array,
                      chunk: int, dtype: str = "float32") -> jax.Array:
    """_gathered_dots' [N, K] dot products from each live chunk's full [chunk, V] logits (a loop over the first
    num_live chunks, zeros for the others), the products' operands in `dtype` (float32 accumulation)."""
    table_op = table_VxD.astype(dtype)

    def one(args):
        h_CxD, i_CxK = args
        return jnp.take_along_axis(_dot(h_CxD, table_op, ((1,), (1,)), dtype), i_CxK, axis=1)

    i_MxCxK = _chunked(idx_NxK, chunk)
    out = _map_live(one, num_live, (_chunked(hidden_NxD, chunk), i_MxCxK), jnp.zeros(i_MxCxK.shape, jnp.float32))
    return out.reshape(-1, idx_NxK.shape[1])[: idx_NxK.shape[0]]


def _dense_chunk_dots_fwd(hidden_NxD, table_VxD, idx_NxK, num_live, chunk, dtype):
    out = _dense_chunk_dots(hidden_NxD, table_VxD, idx_NxK, num_live, chunk, dtype)
    return out, (hidden_NxD, table_VxD, idx_NxK, num_live)


def _dense_chunk_dots_bwd(chunk, dtype, res, g_NxK):
    """Per live chunk: g scattered into a dense [chunk, V] logit gradient (repeated negatives add up), then
    d hidden = G · table and d table += G^T · hidden, two matmuls (the table's gradient a loop carry). In
    bfloat16, G^T is written out (layers.transpose_copy) so that both are plain [M, K] x [K, N] products, the
    form XLA:CPU runs in bfloat16."""
    hidden_NxD, table_VxD, idx_NxK, num_live = res
    rows_Cx1 = jnp.arange(chunk)[:, None]
    table_op = table_VxD.astype(dtype)

    def body(dtable_VxD, args):
        h_CxD, i_CxK, g_CxK = args
        g_CxV = jnp.zeros((chunk, table_VxD.shape[0]), g_CxK.dtype).at[rows_Cx1, i_CxK].add(g_CxK).astype(dtype)
        g_VxC = transpose_copy(g_CxV) if dtype == "bfloat16" else g_CxV.T
        return dtable_VxD + _dot(g_VxC, h_CxD, ((1,), (0,)), dtype), _dot(g_CxV, table_op, ((1,), (0,)), dtype)

    h_MxCxD = _chunked(hidden_NxD, chunk)
    dtable_VxD, dh = _scan_live(body, num_live, jnp.zeros_like(table_VxD),
                                (h_MxCxD, _chunked(idx_NxK, chunk), _chunked(g_NxK, chunk)),
                                jnp.zeros(h_MxCxD.shape, jnp.float32))
    dh_NxD = dh.reshape(-1, hidden_NxD.shape[1])[: hidden_NxD.shape[0]]
    return dh_NxD.astype(hidden_NxD.dtype), dtable_VxD.astype(table_VxD.dtype), None, None


_dense_chunk_dots.defvjp(_dense_chunk_dots_fwd, _dense_chunk_dots_bwd)


def full_softmax_loss(
    hidden_NxD: jax.Array,
    targets_N: jax.Array,
    table_VxD: jax.Array,
    *,
    temperature: float,
    matmul_dtype: str = "float32",
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of the softmax over every item (rows 1..V-1 of the table) per target token.

    The loss SASRec is trained with in Klenitskiy & Vasilev 2023 ("Turning Dross Into Gold Loss"),
    which they find ranks better than sampled negatives. Costs 2·D·(V−1) FLOPs per token
    (flops.scored_per_target). Same arguments and returns as `sampled_softmax_loss` (matmul_dtype: the
    logits' product, layers.matmul).
    """
    check_matmul_dtype(matmul_dtype)
    h_pad, t_pad = _pad_columns(hidden_NxD, table_VxD[1:])
    logits_NxV = matmul(h_pad, t_pad.T, matmul_dtype) / temperature
    safe_N = jnp.maximum(targets_N - 1, 0)
    pos_logit_N = jnp.take_along_axis(logits_NxV, safe_N[:, None], axis=1)[:, 0]
    loss_N = jax.nn.logsumexp(logits_NxV, axis=1) - pos_logit_N
    weight_N = (targets_N > 0).astype(jnp.float32)
    return jnp.sum(loss_N * weight_N), jnp.sum(weight_N)
