"""Memory-lean XLA path of jagged causal HSTU attention (the training path on CPU).

The flat token stream is cut into query blocks of `block` tokens. Because a sequence is at most
max_len tokens long, the keys a query block can see lie in the window
[block_start - max_len + 1, block_end), i.e. in the `num_chunks = ceil((max_len - 1) / block) + 1`
key chunks ending at the diagonal. Fewer are live: no query of a block sees a key before the start
of the sequence holding the block's first token (sequences are contiguous), so block n needs only
the need[n] chunks from that start's chunk (or the window's, if later) to the diagonal, and a block
of padding needs none. On short sequences this skips most of the window.

Work list (`tile_schedule`): blocks are sorted by need, descending, and cut into groups of `group`
blocks. For each distance d = 0 .. num_chunks - 1 from the diagonal, every group whose first
(neediest) block needs d is one tile: its query blocks (contiguous rows in sorted order) against
each block's key chunk at distance d (a gather). The other blocks of a tile may not need that
chunk; the mask keeps them exact, as it keeps everything exact. Only the live tiles run: a
`lax.fori_loop` with the batch's tile count as its (dynamic) trip count, forward and backward.
HSTU has no softmax normaliser, so the output is a plain sum over tiles.

Position bias: with the default positions (each token's index in its sequence, derived from offsets), a
same-sequence pair's relative position is its token distance, so a tile at distance d has one [block, block]
position bias, table[max_len - 1 - d * block + key - query], shared by its query blocks and heads (other pairs
are masked). It is gathered from the table once per tile, and its gradient is the tile's dS summed over
blocks and heads before the scatter into the table: block^2 gathered and scattered entries per tile instead
of group * block^2. Explicit positions take the per-pair gather. (The HSTU reference's ML-1M lengths, T = 16,768,
2-core AVX-512 CPU, one layer fwd + bwd, float32: 1 head of 50 dims 99 -> 75 ms; 4 heads of 64: within noise.)

Gradients: a custom VJP whose backward loops over the same tiles, recomputes each tile's scores and
adds its q, k, v and bias-table gradients into loop carries (nothing is saved per tile). The tile's
backward is written out (`_tile_grads`), not autodiff's. On the 2-core CPU, a loop of 39 tiles of the HSTU
reference's large ML-1M shapes took 84% of autodiff's time in float32 and 77% with bfloat16 operands; a
whole layer's backward (bias tables included, bfloat16 inputs) 155 -> ~100 ms.

Cost: O(T * (live keys per query, rounded up to blocks) * H * D) flops, never more than
O(T * (max_len + block) * H * D); memory O(T * H * D + group * block^2 * H), linear in T.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scaling_rec.kernels.hstu_reference import (
    DEFAULT_TIME_BUCKET_DIVISOR,
    positions_from_offsets,
    relative_bias,
    segment_ids_from_offsets,
)


def default_block(max_len: int) -> int:
    """Query/key block size of the XLA path: 64 tokens, smaller for short max_len (multiple of 8)."""
    return int(min(64, max(8, -(-max_len // 8) * 8)))


def default_group(block: int) -> int:
    """Query blocks per tile of the XLA path: about 1024 query tokens."""
    return max(1, 1024 // block)


def _chunks(x_T: jax.Array, front: int, back: int, block: int, fill: int | float) -> jax.Array:
    """Pad a per-token array [T, ...] by front/back tokens and cut into [num, block, ...] chunks."""
    pad = [(front, back)] + [(0, 0)] * (x_T.ndim - 1)
    x_pad = jnp.pad(x_T, pad, constant_values=fill)
    return x_pad.reshape((-1, block) + x_T.shape[1:])


class Schedule(NamedTuple):
    """The live tiles of one batch (`tile_schedule`); tiles >= num_tiles are not run.

    need_N: int32 [N] key chunks query block n needs (diagonal included; 0 for padding blocks).
    order_N: int32 [N] query blocks sorted by need, descending (row r of the tiles is order_N[r]).
    num_tiles: int32 [] live tiles. dist_S, grp_S: int32 [S] distance from the diagonal and group
      (rows grp*group .. grp*group + group - 1) of tile s, distance-major; S = num_chunks * groups.
    """

    need_N: jax.Array
    order_N: jax.Array
    num_tiles: jax.Array
    dist_S: jax.Array
    grp_S: jax.Array


def tile_schedule(
    offsets: jax.Array, seg_T: jax.Array, *, max_len: int, block: int, group: int, num_blocks: int
) -> Schedule:
    """Which (query-block group, key-chunk distance) tiles a batch needs; see the module docstring.

    Args:
      offsets: int [B+1]; seg_T: int32 [T] segment ids (B for padding).
      num_blocks: N, the query blocks (a multiple of group, >= ceil(T / block)).
    """
    num_seq = offsets.shape[0] - 1
    num_chunks = -(-(max_len - 1) // block) + 1
    num_groups = num_blocks // group
    blk_N = jnp.arange(num_blocks, dtype=jnp.int32)
    seg0_N = _chunks(seg_T, 0, num_blocks * block - seg_T.shape[0], block, num_seq)[:, 0]
    start_N = offsets.astype(jnp.int32)[jnp.minimum(seg0_N, num_seq - 1)]
    lo_N = jnp.maximum(start_N, blk_N * block - (max_len - 1)) // block
    need_N = jnp.where(seg0_N < num_seq, blk_N - lo_N + 1, 0).astype(jnp.int32)
    order_N = jnp.argsort(-need_N, stable=True).astype(jnp.int32)
    need_first = need_N[order_N].reshape(num_groups, group)[:, 0]
    tiles_W = jnp.sum(need_first[None, :] > jnp.arange(num_chunks, dtype=jnp.int32)[:, None], axis=1)
    ends_W = jnp.cumsum(tiles_W).astype(jnp.int32)
    tile_S = jnp.arange(num_chunks * num_groups, dtype=jnp.int32)
    dist_S = jnp.minimum(jnp.searchsorted(ends_W, tile_S, side="right"), num_chunks - 1).astype(jnp.int32)
    grp_S = tile_S - (ends_W - tiles_W)[dist_S]
    return Schedule(need_N, order_N, ends_W[-1], dist_S, grp_S)


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
    group: int | None = None,
) -> jax.Array:
    """Blocked-window HSTU attention in XLA; same contract as `hstu_attention_reference`.

    Args:
      q, k, v: [T, H, D]; offsets: int32 [B+1]; see `scaling_rec.kernels.hstu_attention`.
      block: tokens per query/key block (default `default_block(max_len)`).
      group: query blocks per tile (default `default_group(block)`).
    Returns:
      [T, H, D] in q's dtype. Scores, SiLU and sums are float32; the tiles' products take bfloat16 operands
      when q is bfloat16 (as the Pallas kernel's tensor cores do), else float32.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_seq = offsets.shape[0] - 1
    bq = block or default_block(max_len)
    g = min(group or default_group(bq), -(-num_tokens // bq))
    nq = -(-num_tokens // (bq * g)) * g  # query blocks, whole groups
    back = nq * bq - num_tokens
    nw = -(-(max_len - 1) // bq) + 1
    front = (nw - 1) * bq

    seg_T = segment_ids_from_offsets(offsets, num_tokens)
    token_positions = positions is None  # a same-sequence pair's relative position is its token distance
    if positions is None:
        positions = positions_from_offsets(offsets, seg_T)
    if query_timestamps is None:
        query_timestamps = timestamps
    positions = positions.astype(jnp.int32)
    sched = tile_schedule(offsets, seg_T, max_len=max_len, block=bq, group=g, num_blocks=nq)
    order_N = sched.order_N

    use_time = time_bias is not None
    side = _Side(
        num_tiles=sched.num_tiles,
        dist_S=sched.dist_S,
        grp_S=sched.grp_S,
        order_N=order_N,
        segq_NxB=_chunks(seg_T, 0, back, bq, num_seq)[order_N],
        posq_NxB=None if token_positions else _chunks(positions, 0, back, bq, 0)[order_N],
        qts_NxB=_chunks(query_timestamps.astype(jnp.int32), 0, back, bq, 0)[order_N] if use_time else None,
        segk_CxB=_chunks(seg_T, front, back, bq, -1),
        posk_CxB=None if token_positions else _chunks(positions, front, back, bq, 0),
        tsk_CxB=_chunks(timestamps.astype(jnp.int32), front, back, bq, 0) if use_time else None,
    )
    cfg = _Config(max_len=max_len, block=bq, group=g, num_chunks=nw, num_seq=num_seq,
                  divisor=float(time_bucket_divisor))

    dtype = jnp.bfloat16 if q.dtype == jnp.bfloat16 else jnp.float32  # the tiles' product operands

    def to_heads(x_NxBxHxD: jax.Array) -> jax.Array:
        return x_NxBxHxD.transpose(0, 2, 1, 3).astype(dtype)

    q_NxHxBxD = to_heads(_chunks(q, 0, back, bq, 0))[order_N]  # sorted block order
    k_CxHxBxD = to_heads(_chunks(k, front, back, bq, 0))
    v_CxHxBxD = to_heads(_chunks(v, front, back, bq, 0))
    acc = _tiled_attention(cfg, q_NxHxBxD, k_CxHxBxD, v_CxHxBxD, (pos_bias, time_bias), side)
    acc = jnp.zeros_like(acc).at[order_N].set(acc, unique_indices=True)  # back to token order (float32)
    out_TxHxD = acc.transpose(0, 2, 1, 3).reshape(nq * bq, num_heads, head_dim)[:num_tokens]
    return out_TxHxD.astype(q.dtype)


@dataclasses.dataclass(frozen=True)
class _Config:
    max_len: int
    block: int
    group: int
    num_chunks: int
    num_seq: int
    divisor: float


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Side:
    """Integer inputs of the tiles: the schedule and the per-token arrays cut into blocks.

    Query-side arrays [N, B] are in sorted block order; key-side arrays [C, B] are front-padded by
    num_chunks - 1 chunks (key chunk of query block n at distance d: n - d + num_chunks - 1). posq, posk
    are None with the default positions (the position bias is then a function of the tile's distance).
    """

    num_tiles: jax.Array
    dist_S: jax.Array
    grp_S: jax.Array
    order_N: jax.Array
    segq_NxB: jax.Array
    posq_NxB: jax.Array | None
    qts_NxB: jax.Array | None
    segk_CxB: jax.Array
    posk_CxB: jax.Array | None
    tsk_CxB: jax.Array | None


Tables = tuple[jax.Array | None, jax.Array | None]


def _tile_index(cfg: _Config, side: _Side, s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Tile s -> (distance, its first sorted row, key-chunk index [G] of each of its query blocks)."""
    dist = side.dist_S[s]
    row = side.grp_S[s] * cfg.group
    kc_G = jax.lax.dynamic_slice_in_dim(side.order_N, row, cfg.group) - dist + (cfg.num_chunks - 1)
    return dist, row, kc_G


def _mask(cfg: _Config, side: _Side, dist: jax.Array, row: jax.Array, kc_G: jax.Array) -> jax.Array:
    """Which pairs of a tile are live, [G, B, B]: same sequence, causal, within max_len."""
    iota_B = jnp.arange(cfg.block, dtype=jnp.int32)
    diff_1xBxB = (iota_B[:, None] - iota_B[None, :] + dist * cfg.block)[None]  # query - key token
    segq = _rows(cfg, row, side.segq_NxB)[:, :, None]
    return (
        (segq == side.segk_CxB[kc_G][:, None, :])
        & (segq < cfg.num_seq)
        & (diff_1xBxB >= 0)
        & (diff_1xBxB < cfg.max_len)
    )


def _bias(cfg: _Config, side: _Side, dist: jax.Array, row: jax.Array, kc_G: jax.Array,
          tables: Tables) -> jax.Array | None:
    """A tile's relative bias, float32 [G, B, B], or [1, B, B] when only the distance-determined position bias
    applies (None without tables)."""
    pos_bias, time_bias = tables
    toeplitz = side.posq_NxB is None
    bias = relative_bias(
        None if toeplitz else _rows(cfg, row, side.posq_NxB)[:, :, None],
        None if toeplitz else side.posk_CxB[kc_G][:, None, :],
        max_len=cfg.max_len,
        pos_bias=None if toeplitz else pos_bias,
        qts_q=_rows(cfg, row, side.qts_NxB)[:, :, None] if time_bias is not None else None,
        ts_k=side.tsk_CxB[kc_G][:, None, :] if time_bias is not None else None,
        time_bias=time_bias,
        divisor=cfg.divisor,
    )
    if toeplitz and pos_bias is not None:
        iota_B = jnp.arange(cfg.block, dtype=jnp.int32)
        rel_BxB = cfg.max_len - 1 - dist * cfg.block + iota_B[None, :] - iota_B[:, None]
        pos_1xBxB = pos_bias.astype(jnp.float32)[jnp.clip(rel_BxB, 0, 2 * cfg.max_len - 2)][None]
        bias = pos_1xBxB if bias is None else bias + pos_1xBxB
    return bias


def _dot(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _swap_last(x_GxHxAxB: jax.Array) -> jax.Array:
    """x with its last two axes swapped, for a product that contracts over the query axis ([.., k, q] x [.., q, d]).

    XLA:CPU runs a batched product that contracts over the lhs's second-to-last axis at ~50 GFLOP/s, the plain
    form at ~75 (float32) to ~140 (bfloat16) on the 2-core CPU. In bfloat16 the swap is written out through a
    split axis (a transpose XLA cannot fold into the product); in float32 the folded transpose was faster."""
    g, h, a, b = x_GxHxAxB.shape
    if x_GxHxAxB.dtype != jnp.bfloat16 or a % 8:
        return jnp.swapaxes(x_GxHxAxB, 2, 3)
    return jnp.transpose(x_GxHxAxB.reshape(g, h, a // 8, 8, b), (0, 1, 4, 2, 3)).reshape(g, h, b, a)


def _scores(cfg, side, dist, row, kc_G, q_GxHxBxD, k_GxHxBxD, tables):
    """(scores s [G, H, B, B] float32 with the bias, live mask [G, 1, B, B])."""
    s_GxHxBxB = _dot("nhqd,nhkd->nhqk", q_GxHxBxD, k_GxHxBxD)
    bias_GxBxB = _bias(cfg, side, dist, row, kc_G, tables)  # or [1, B, B]
    if bias_GxBxB is not None:
        s_GxHxBxB = s_GxHxBxB + bias_GxBxB[:, None]
    return s_GxHxBxB, _mask(cfg, side, dist, row, kc_G)[:, None]


def _tile(
    cfg: _Config, side: _Side, dist: jax.Array, row: jax.Array, kc_G: jax.Array,
    q_GxHxBxD: jax.Array, k_GxHxBxD: jax.Array, v_GxHxBxD: jax.Array, tables: Tables,
) -> jax.Array:
    """One tile's contribution [G, H, B, D] float32: G query blocks against their key chunks at `dist`."""
    s_GxHxBxB, mask = _scores(cfg, side, dist, row, kc_G, q_GxHxBxD, k_GxHxBxD, tables)
    p_GxHxBxB = jnp.where(mask, jax.nn.silu(s_GxHxBxB) * (1.0 / cfg.max_len), 0.0)
    return _dot("nhqk,nhkd->nhqd", p_GxHxBxB.astype(v_GxHxBxD.dtype), v_GxHxBxD)


def _tile_grads(
    cfg: _Config, side: _Side, dist: jax.Array, row: jax.Array, kc_G: jax.Array,
    q_GxHxBxD: jax.Array, k_GxHxBxD: jax.Array, v_GxHxBxD: jax.Array, tables: Tables, dout_GxHxBxD: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, Tables]:
    """The tile's gradients (dq, dk, dv float32 [G, H, B, D]; the tables'), written out rather than
    autodiff's: the scores once, SiLU's sigmoid shared by p and its derivative, every product in the plain
    form (`_swap_last`), bfloat16 operands where the inputs are bfloat16 (dout_GxHxBxD in q's dtype)."""
    dtype = q_GxHxBxD.dtype
    s_GxHxBxB, bias_vjp, mask = jax.vjp(
        lambda t: _scores(cfg, side, dist, row, kc_G, q_GxHxBxD, k_GxHxBxD, t), tables, has_aux=True)
    inv_n = 1.0 / cfg.max_len
    sig = jax.nn.sigmoid(s_GxHxBxB)
    p_GxHxBxB = jnp.where(mask, s_GxHxBxB * sig * inv_n, 0.0)
    dp_GxHxBxB = _dot("nhqd,nhkd->nhqk", dout_GxHxBxD, v_GxHxBxD)
    ds_GxHxBxB = jnp.where(mask, dp_GxHxBxB * (sig * (1.0 + s_GxHxBxB * (1.0 - sig)) * inv_n), 0.0)
    dv = _dot("nhkq,nhqd->nhkd", _swap_last(p_GxHxBxB.astype(dtype)), dout_GxHxBxD)
    dk = _dot("nhkq,nhqd->nhkd", _swap_last(ds_GxHxBxB.astype(dtype)), q_GxHxBxD)
    dq = _dot("nhqk,nhkd->nhqd", ds_GxHxBxB.astype(dtype), k_GxHxBxD)
    (dtables,) = bias_vjp(ds_GxHxBxB)
    return dq, dk, dv, dtables


def _rows(cfg: _Config, row: jax.Array, x: jax.Array) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(x, row, cfg.group, axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiled_attention(
    cfg: _Config, q_NxHxBxD: jax.Array, k_CxHxBxD: jax.Array, v_CxHxBxD: jax.Array, tables: Tables,
    side: _Side,
) -> jax.Array:
    """Sum of the live tiles, [N, H, B, D] float32 in sorted block order (a loop of dynamic trip count)."""

    def body(s: jax.Array, acc_NxHxBxD: jax.Array) -> jax.Array:
        dist, row, kc_G = _tile_index(cfg, side, s)
        out_GxHxBxD = _tile(cfg, side, dist, row, kc_G, _rows(cfg, row, q_NxHxBxD), k_CxHxBxD[kc_G],
                            v_CxHxBxD[kc_G], tables)
        acc_GxHxBxD = _rows(cfg, row, acc_NxHxBxD) + out_GxHxBxD
        return jax.lax.dynamic_update_slice_in_dim(acc_NxHxBxD, acc_GxHxBxD, row, axis=0)

    return jax.lax.fori_loop(0, side.num_tiles, body, jnp.zeros(q_NxHxBxD.shape, jnp.float32))


def _tiled_attention_fwd(cfg, q_NxHxBxD, k_CxHxBxD, v_CxHxBxD, tables, side):
    out = _tiled_attention(cfg, q_NxHxBxD, k_CxHxBxD, v_CxHxBxD, tables, side)
    return out, (q_NxHxBxD, k_CxHxBxD, v_CxHxBxD, tables, side)


def _tiled_attention_bwd(cfg, res, dout_NxHxBxD):
    """Recompute each live tile; add its q, k, v and table gradients into the (float32) loop carries."""
    q_NxHxBxD, k_CxHxBxD, v_CxHxBxD, tables, side = res
    dout_NxHxBxD = dout_NxHxBxD.astype(q_NxHxBxD.dtype)

    def body(s, grads):
        dq, dk, dv, dtables = grads
        dist, row, kc_G = _tile_index(cfg, side, s)
        dq_g, dk_g, dv_g, dtables_g = _tile_grads(cfg, side, dist, row, kc_G, _rows(cfg, row, q_NxHxBxD),
                                                  k_CxHxBxD[kc_G], v_CxHxBxD[kc_G], tables,
                                                  _rows(cfg, row, dout_NxHxBxD))
        dq = jax.lax.dynamic_update_slice_in_dim(dq, _rows(cfg, row, dq) + dq_g, row, axis=0)
        dk = dk.at[kc_G].add(dk_g, unique_indices=True)  # a tile's key chunks are distinct
        dv = dv.at[kc_G].add(dv_g, unique_indices=True)
        return dq, dk, dv, jax.tree.map(jnp.add, dtables, dtables_g)

    zeros = tuple(jnp.zeros(x.shape, jnp.float32) for x in (q_NxHxBxD, k_CxHxBxD, v_CxHxBxD))
    dq, dk, dv, dtables = jax.lax.fori_loop(0, side.num_tiles, body, (*zeros, jax.tree.map(jnp.zeros_like, tables)))
    dq, dk, dv = (g.astype(x.dtype) for g, x in zip((dq, dk, dv), (q_NxHxBxD, k_CxHxBxD, v_CxHxBxD), strict=True))
    dside = jax.tree.map(lambda x: np.zeros(x.shape, jax.dtypes.float0), side)
    return dq, dk, dv, dtables, dside


_tiled_attention.defvjp(_tiled_attention_fwd, _tiled_attention_bwd)
