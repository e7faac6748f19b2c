"""Memory-lean XLA path of jagged causal HSTU attention (the training path on CPU).

The flat token stream is cut into query blocks of `block` tokens. Because a sequence is at most
max_len tokens long, the keys a query block can see lie in the window
[block_start - max_len + 1, block_end), i.e. in the `num_chunks = ceil((max_len - 1) / block) + 1`
key chunks ending at the diagonal. A `lax.scan` over the chunk offset w handles, for all query
blocks at once, their w-th key chunk (a static-shape slice of a front-padded copy of k and v);
HSTU has no softmax normaliser, so the output is a plain sum over chunks.

Cost: O(T * (max_len + block) * H * D) flops; memory O(T * H * (D + block)) per step, linear in T
(the scan body is rematerialised in the backward pass so the residuals are not stacked over
steps). Gradients come from plain autodiff.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from scaling_rec.kernels.hstu_reference import (
    DEFAULT_TIME_BUCKET_DIVISOR,
    positions_from_offsets,
    relative_bias,
    segment_ids_from_offsets,
)


def default_block(max_len: int) -> int:
    """Query/key block size of the XLA path: 64 tokens, smaller for short max_len (multiple of 8)."""
    return int(min(64, max(8, -(-max_len // 8) * 8)))


def _chunks(x_T: jax.Array, front: int, back: int, block: int, fill: int | float) -> jax.Array:
    """Pad a per-token array [T, ...] by front/back tokens and cut into [num, block, ...] chunks."""
    pad = [(front, back)] + [(0, 0)] * (x_T.ndim - 1)
    x_pad = jnp.pad(x_T, pad, constant_values=fill)
    return x_pad.reshape((-1, block) + x_T.shape[1:])


def hstu_attention_xla(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    offsets: jax.Array,
    *,
    max_len: int,
    positions: jax.Array | None = None,
    pos_bias: jax.Array | None = None,
    timestamps: jax.Array | None = None,
    query_timestamps: jax.Array | None = None,
    time_bias: jax.Array | None = None,
    time_bucket_divisor: float = DEFAULT_TIME_BUCKET_DIVISOR,
    block: int | None = None,
    remat: bool = True,
) -> jax.Array:
    """Blocked-window HSTU attention in XLA; same contract as `hstu_attention_reference`.

    Args:
      q, k, v: [T, H, D]; offsets: int32 [B+1]; see `scaling_rec.kernels.hstu_attention`.
      block: tokens per query/key block (default `default_block(max_len)`).
      remat: recompute each scan step in the backward pass (memory linear in T for any max_len).
    Returns:
      [T, H, D] in q's dtype (computed in float32).
    """
    num_tokens, num_heads, head_dim = q.shape
    num_seq = offsets.shape[0] - 1
    bq = block or default_block(max_len)
    nq = -(-num_tokens // bq)
    back = nq * bq - num_tokens
    nw = -(-(max_len - 1) // bq) + 1
    front = (nw - 1) * bq

    seg_T = segment_ids_from_offsets(offsets, num_tokens)
    if positions is None:
        positions = positions_from_offsets(offsets, seg_T)
    if query_timestamps is None:
        query_timestamps = timestamps
    positions = positions.astype(jnp.int32)

    def to_heads(x_NxBxHxD: jax.Array) -> jax.Array:
        return x_NxBxHxD.transpose(0, 2, 1, 3).astype(jnp.float32)

    q_NxHxBxD = to_heads(_chunks(q, 0, back, bq, 0))
    k_CxHxBxD = to_heads(_chunks(k, front, back, bq, 0))
    v_CxHxBxD = to_heads(_chunks(v, front, back, bq, 0))
    segq_NxB = _chunks(seg_T, 0, back, bq, num_seq)
    segk_CxB = _chunks(seg_T, front, back, bq, -1)
    posq_NxB = _chunks(positions, 0, back, bq, 0)
    posk_CxB = _chunks(positions, front, back, bq, 0)
    use_time = time_bias is not None
    if use_time:
        qts_NxB = _chunks(query_timestamps.astype(jnp.int32), 0, back, bq, 0)
        tsk_CxB = _chunks(timestamps.astype(jnp.int32), front, back, bq, 0)
    tokq_NxB = jnp.arange(nq * bq, dtype=jnp.int32).reshape(nq, bq)

    def step(acc_NxHxBxD: jax.Array, w: jax.Array) -> tuple[jax.Array, None]:
        take = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=w, slice_size=nq, axis=0)
        k_NxHxBxD, v_NxHxBxD = take(k_CxHxBxD), take(v_CxHxBxD)
        tokk_NxB = tokq_NxB + (w - (nw - 1)) * bq
        diff_NxBxB = tokq_NxB[:, :, None] - tokk_NxB[:, None, :]
        segq = segq_NxB[:, :, None]
        mask_NxBxB = (
            (segq == take(segk_CxB)[:, None, :])
            & (segq < num_seq)
            & (diff_NxBxB >= 0)
            & (diff_NxBxB < max_len)
        )
        s_NxHxBxB = jnp.einsum("nhqd,nhkd->nhqk", q_NxHxBxD, k_NxHxBxD)
        bias_NxBxB = relative_bias(
            posq_NxB[:, :, None],
            take(posk_CxB)[:, None, :],
            max_len=max_len,
            pos_bias=pos_bias,
            qts_q=qts_NxB[:, :, None] if use_time else None,
            ts_k=take(tsk_CxB)[:, None, :] if use_time else None,
            time_bias=time_bias,
            divisor=time_bucket_divisor,
        )
        if bias_NxBxB is not None:
            s_NxHxBxB = s_NxHxBxB + bias_NxBxB[:, None]
        p_NxHxBxB = jnp.where(mask_NxBxB[:, None], jax.nn.silu(s_NxHxBxB) * (1.0 / max_len), 0.0)
        acc_NxHxBxD = acc_NxHxBxD + jnp.einsum("nhqk,nhkd->nhqd", p_NxHxBxB, v_NxHxBxD)
        return acc_NxHxBxD, None

    if remat:
        step = jax.checkpoint(step)
    acc0 = jnp.zeros((nq, num_heads, bq, head_dim), jnp.float32)
    acc, _ = jax.lax.scan(step, acc0, jnp.arange(nw, dtype=jnp.int32))
    out_TxHxD = acc.transpose(0, 2, 1, 3).reshape(nq * bq, num_heads, head_dim)[:num_tokens]
    return out_TxHxD.astype(q.dtype)
