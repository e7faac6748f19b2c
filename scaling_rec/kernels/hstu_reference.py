"""Dense pure-jnp ground truth of jagged causal HSTU attention, and the helpers all paths share.

HSTU pointwise attention (Zhai et al. 2024, "Actions Speak Louder than Words", eq. 2):
    out_i = sum_{j <= i, same sequence} SiLU(q_i . k_j + rab(i, j)) / max_len * v_j
with the relative attention bias rab of the reference implementation
(RelativeBucketedTimeAndPositionBasedBias): a position table indexed by pos_j - pos_i and a
time table indexed by a log bucket of |query_ts_i - ts_j|.

The reference builds the full T x T masked matrix: O(T^2) memory, for tests only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_TIME_BUCKET_DIVISOR = 0.301


def segment_ids_from_offsets(offsets_B1: jax.Array, num_tokens: int) -> jax.Array:
    """Sequence index of every token.

    Args:
      offsets_B1: int [B+1] cumulative starts (non-decreasing, offsets[0] == 0).
      num_tokens: T, the static token budget.
    Returns:
      int32 [T]: b for tokens in [offsets[b], offsets[b+1]), B for padding tokens (>= offsets[B]).
      Empty sequences (repeated offsets) own no token.
    """
    tok_T = jnp.arange(num_tokens, dtype=jnp.int32)
    seg_T = jnp.searchsorted(offsets_B1.astype(jnp.int32), tok_T, side="right") - 1
    return seg_T.astype(jnp.int32)


def positions_from_offsets(offsets_B1: jax.Array, segment_ids_T: jax.Array) -> jax.Array:
    """0-based position of every token within its sequence; int32 [T], 0 at padding tokens."""
    num_seq = offsets_B1.shape[0] - 1
    tok_T = jnp.arange(segment_ids_T.shape[0], dtype=jnp.int32)
    start_T = offsets_B1.astype(jnp.int32)[jnp.minimum(segment_ids_T, num_seq - 1)]
    return jnp.where(segment_ids_T < num_seq, tok_T - start_T, 0).astype(jnp.int32)


def time_bucket(
    query_ts: jax.Array, key_ts: jax.Array, num_buckets: int, divisor: float
) -> jax.Array:
    """Log time bucket clip(floor(ln(max(|qts - ts|, 1)) / divisor), 0, num_buckets).

    Args:
      query_ts, key_ts: int timestamps (seconds), broadcastable to each other.
      num_buckets: the time table has num_buckets + 1 rows.
      divisor: the bucket width in log-seconds (0.301 in the reference HSTU).
    Returns:
      int32 bucket index of the broadcast shape.
    """
    dt = jnp.abs(query_ts.astype(jnp.int32) - key_ts.astype(jnp.int32))
    dt_f = jnp.maximum(dt, 1).astype(jnp.float32)
    bucket = jnp.floor(jnp.log(dt_f) / jnp.float32(divisor)).astype(jnp.int32)
    return jnp.clip(bucket, 0, num_buckets)


def relative_bias(
    pos_q: jax.Array,
    pos_k: jax.Array,
    *,
    max_len: int,
    pos_bias: jax.Array | None,
    qts_q: jax.Array | None,
    ts_k: jax.Array | None,
    time_bias: jax.Array | None,
    divisor: float,
) -> jax.Array | None:
    """rab(i, j) for query rows and key columns; None when there is no bias table.

    Args:
      pos_q: int [..., Q, 1] query positions; pos_k: int [..., 1, K] key positions.
      qts_q / ts_k: int timestamps shaped like pos_q / pos_k (needed with time_bias).
      pos_bias: [2*max_len - 1] table; time_bias: [num_buckets + 1] table.
    Returns:
      float32 [..., Q, K] or None.
    """
    bias = None
    if pos_bias is not None:
        rel = jnp.clip(max_len - 1 + pos_k - pos_q, 0, 2 * max_len - 2)
        bias = pos_bias.astype(jnp.float32)[rel]
    if time_bias is not None:
        bucket = time_bucket(qts_q, ts_k, time_bias.shape[0] - 1, divisor)
        tb = time_bias.astype(jnp.float32)[bucket]
        bias = tb if bias is None else bias + tb
    return bias


def hstu_attention_reference(
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
) -> jax.Array:
    """Dense O(T^2) HSTU attention; the ground truth the fast paths are tested against.

    Args:
      q, k, v: [T, H, D] any float dtype (computed in float32).
      offsets: int32 [B+1]; tokens after offsets[-1] are padding and produce zeros.
      max_len: longest allowed sequence; also the SiLU normaliser. Keys more than max_len - 1
        tokens before a query are never attended (a no-op for sequences of length <= max_len).
      positions: int [T] within-sequence positions (default: derived from offsets).
      pos_bias: [2*max_len - 1]; timestamps, query_timestamps: int [T]; time_bias: [NB + 1].
    Returns:
      [T, H, D] in q's dtype.
    """
    num_tokens = q.shape[0]
    num_seq = offsets.shape[0] - 1
    seg_T = segment_ids_from_offsets(offsets, num_tokens)
    if positions is None:
        positions = positions_from_offsets(offsets, seg_T)
    if query_timestamps is None:
        query_timestamps = timestamps
    tok_T = jnp.arange(num_tokens, dtype=jnp.int32)
    diff_TxT = tok_T[:, None] - tok_T[None, :]
    mask_TxT = (
        (seg_T[:, None] == seg_T[None, :])
        & (seg_T[:, None] < num_seq)
        & (diff_TxT >= 0)
        & (diff_TxT < max_len)
    )
    s_HxTxT = jnp.einsum("ihd,jhd->hij", q.astype(jnp.float32), k.astype(jnp.float32))
    bias_TxT = relative_bias(
        positions[:, None],
        positions[None, :],
        max_len=max_len,
        pos_bias=pos_bias,
        qts_q=None if query_timestamps is None else query_timestamps[:, None],
        ts_k=None if timestamps is None else timestamps[None, :],
        time_bias=time_bias,
        divisor=time_bucket_divisor,
    )
    if bias_TxT is not None:
        s_HxTxT = s_HxTxT + bias_TxT[None]
    p_HxTxT = jnp.where(mask_TxT[None], jax.nn.silu(s_HxTxT) / max_len, 0.0)
    out_TxHxD = jnp.einsum("hij,jhd->ihd", p_HxTxT, v.astype(jnp.float32))
    return out_TxHxD.astype(q.dtype)
