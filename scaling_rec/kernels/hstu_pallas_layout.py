"""What the forward and backward Pallas kernels of HSTU attention share: the static kernel configuration,
the per-token side arrays and block visit ranges, one tile's scores, mask and bias rows, and the BlockSpecs.

Split from `hstu_pallas` (forward kernel, custom VJP) so that it and `hstu_pallas_bwd` both import this
module and neither imports the other's importer (no import cycle).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from scaling_rec.kernels.hstu_reference import positions_from_offsets, segment_ids_from_offsets, time_bucket


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static configuration shared by the forward and backward kernels."""

    block: int  # tokens per query block and per key block (multiple of 16)
    max_len: int
    num_seq: int  # B: segment id B marks padding
    num_tokens: int  # T before padding
    head_dim: int  # D before padding
    use_pos: bool
    use_time: bool
    divisor: float
    interpret: bool

    @property
    def num_window_blocks(self) -> int:
        """Key blocks a query block can meet, the diagonal included."""
        return -(-(self.max_len - 1) // self.block) + 1

    def compiler_params(self) -> plgpu.CompilerParams | None:
        """Triton launch parameters (ignored in interpret mode)."""
        return None if self.interpret else plgpu.CompilerParams(num_warps=4, num_stages=2)


class Side(NamedTuple):
    """Per-token int32 arrays [Tp] and per-block visit ranges int32 [nb] (static-shape)."""

    seg: jax.Array  # sequence id, num_seq at padding
    pos: jax.Array  # position within the sequence
    ts: jax.Array  # key timestamps (zeros when unused)
    qts: jax.Array  # query timestamps (zeros when unused)
    kv_lo: jax.Array  # first key block of query block n
    kv_hi: jax.Array  # one past the last key block of query block n (n + 1, or kv_lo if empty)
    q_lo: jax.Array  # first query block meeting key block m
    q_hi: jax.Array  # one past the last query block meeting key block m


def default_block(max_len: int) -> int:
    """64-token blocks, or 16/32 when max_len is that short."""
    return 16 if max_len <= 16 else 32 if max_len <= 32 else 64


def prepare_side(
    offsets: jax.Array, positions: jax.Array | None, timestamps: jax.Array | None,
    query_timestamps: jax.Array | None, cfg: KernelConfig,
) -> Side:
    """Segment ids, positions, timestamps padded to Tp, and each block's visit range."""
    b, num_seq, max_len = cfg.block, cfg.num_seq, cfg.max_len
    nb = -(-cfg.num_tokens // b)
    tp = nb * b
    offsets = offsets.astype(jnp.int32)
    seg = segment_ids_from_offsets(offsets, tp)
    pad = lambda x: jnp.pad(x.astype(jnp.int32), (0, tp - cfg.num_tokens))
    pos = positions_from_offsets(offsets, seg) if positions is None else pad(positions)
    zeros = jnp.zeros((tp,), jnp.int32)
    ts = zeros if timestamps is None else pad(timestamps)
    qts = ts if query_timestamps is None else pad(query_timestamps)

    blk = jnp.arange(nb, dtype=jnp.int32)
    total = offsets[num_seq]
    # Query block n: keys from its first query's sequence start, at most max_len - 1 back.
    first = blk * b
    seg_first = seg[first]
    q_valid = seg_first < num_seq
    lo_tok = jnp.maximum(first - (max_len - 1), offsets[jnp.minimum(seg_first, num_seq)])
    kv_lo = jnp.where(q_valid, lo_tok // b, 0)
    kv_hi = jnp.where(q_valid, blk + 1, 0)
    # Key block m: queries up to its last valid key's sequence end, at most max_len - 1 ahead.
    k_valid = first < total
    last = jnp.clip(jnp.minimum(first + b, total) - 1, 0, tp - 1)
    seq_end = offsets[jnp.minimum(seg[last] + 1, num_seq)]
    q_hi_tok = jnp.minimum(seq_end, last + max_len)
    q_lo = jnp.where(k_valid, blk, 0)
    q_hi = jnp.where(k_valid, -(-q_hi_tok // b), 0)
    return Side(seg, pos, ts, qts, kv_lo, kv_hi, q_lo, q_hi)


def block_scores(
    q: jax.Array, k: jax.Array, q_idx: tuple[jax.Array, ...], k_idx: tuple[jax.Array, ...],
    pos_tab_ref, time_tab_ref, cfg: KernelConfig,
) -> tuple[jax.Array, jax.Array]:
    """Scores and mask of one (query block, key block) tile, bias included.

    Args:
      q: [b, Dp]; k: [b, Dp]. q_idx = (tok, seg, pos, qts) int32 [b, 1] of the queries;
      k_idx = (tok, seg, pos, ts) int32 [1, b] of the keys.
      pos_tab_ref: ref [2*max_len - 1] f32; time_tab_ref: ref [NB + 1] f32.
    Returns:
      s float32 [b, b] (q . k + rab), mask bool [b, b] (same sequence, causal, within max_len).
    """
    tok_q, seg_q, _, _ = q_idx
    tok_k, seg_k, _, _ = k_idx
    s = jax.lax.dot_general(q, k, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    rel, bucket = bias_indices(q_idx, k_idx, time_tab_ref.shape[0] - 1, cfg)
    if rel is not None:
        s = s + pos_tab_ref[rel]
    if bucket is not None:
        s = s + time_tab_ref[bucket]
    diff = tok_q - tok_k
    mask = (seg_q == seg_k) & (seg_q < cfg.num_seq) & (diff >= 0) & (diff < cfg.max_len)
    return s, mask


def bias_indices(
    q_idx: tuple[jax.Array, ...], k_idx: tuple[jax.Array, ...], num_buckets: int, cfg: KernelConfig,
) -> tuple[jax.Array | None, jax.Array | None]:
    """Rows of the position table and of the time table for one tile: int32 [b, b] each (or None
    when that bias is off). Shapes and arguments as in `block_scores`."""
    _, _, pos_q, qts_q = q_idx
    _, _, pos_k, ts_k = k_idx
    rel = (jnp.clip(cfg.max_len - 1 + pos_k - pos_q, 0, 2 * cfg.max_len - 2)
           if cfg.use_pos else None)
    bucket = time_bucket(qts_q, ts_k, num_buckets, cfg.divisor) if cfg.use_time else None
    return rel, bucket


def load_key_side(side_refs, start: jax.Array, b: int) -> tuple[jax.Array, ...]:
    """(tok, seg, pos, ts) int32 [1, b] of key tokens [start, start + b)."""
    seg_ref, pos_ref, ts_ref = side_refs
    sl = pl.ds(start, b)
    tok = start + jax.lax.broadcasted_iota(jnp.int32, (1, b), 1)
    return tok, seg_ref[sl][None, :], pos_ref[sl][None, :], ts_ref[sl][None, :]


def query_side(start: jax.Array, seg_ref, pos_ref, qts_ref, b: int) -> tuple[jax.Array, ...]:
    """(tok, seg, pos, qts) int32 [b, 1] of a query block whose side refs are [b] blocks."""
    tok = start + jax.lax.broadcasted_iota(jnp.int32, (b, 1), 0)
    return tok, seg_ref[...][:, None], pos_ref[...][:, None], qts_ref[...][:, None]


def specs(cfg: KernelConfig, tp: int, dp: int) -> dict:
    """BlockSpecs on the (block, head) grid: own tile, whole-array tile, token block, full side."""
    b = cfg.block
    nb = tp // b
    return dict(
        tile=pl.BlockSpec((b, None, dp), lambda n, h: (n, h, 0)),
        whole=pl.BlockSpec((tp, None, dp), lambda n, h: (0, h, 0)),
        tok=pl.BlockSpec((b,), lambda n, h: (n,)),
        side=pl.BlockSpec((tp,), lambda n, h: (0,)),
        ranges=pl.BlockSpec((nb,), lambda n, h: (0,)),
    )
