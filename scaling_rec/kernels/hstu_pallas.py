"""Pallas (Triton-style) kernels of jagged causal HSTU attention: layout, forward kernel, custom VJP.

Layout. Tokens are padded to Tp = nb * block (block = query block = key block, a multiple of 16)
and the head dim to a power of two >= 16 (zeros; dot products and outputs unchanged). The grid
is (query block n, head h). A query block only meets key blocks [kv_lo[n], n]: kv_lo starts at
the sequence start of the block's first query and at most max_len - 1 tokens back, so key
blocks fully masked (other sequences, beyond the window, in the future) are never visited, and
query blocks made only of padding run no iteration (their output is zero).

Bias. rab(i, j) is gathered inside the kernel from the position table [2*max_len - 1] and the
time table [NB + 1] (the log bucket computed in-kernel): no T x T bias tensor exists.
All matmuls accumulate in float32; bf16 inputs feed the matmuls as bf16.

The backward kernels (dq; dk, dv; and dS for the table gradients) are in `hstu_pallas_bwd`, the
configuration, side arrays and tile helpers both use in `hstu_pallas_layout`.
The code sticks to what the Triton lowering supports (program_id, pl.ds slices, power-of-two tiles,
int-array gathers, fori_loop, atomic_add). Tested in interpret mode on the CPU and compiled on an H200
(tests/kernels, benchmarks/results/hstu_attention_gpu_h200.json: fwd+bwd 4-8x the XLA path, still far
from cuDNN softmax attention; 128-token tiles exceed its shared memory).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from scaling_rec.kernels.hstu_pallas_bwd import backward
from scaling_rec.kernels.hstu_pallas_layout import (
    KernelConfig,
    Side,
    block_scores,
    default_block,
    load_key_side,
    prepare_side,
    query_side,
    specs,
)
from scaling_rec.kernels.hstu_reference import DEFAULT_TIME_BUCKET_DIVISOR


def _fwd_kernel(kv_lo_ref, kv_hi_ref, segq_ref, posq_ref, qtsq_ref, segk_ref, posk_ref, tsk_ref,
                pos_tab_ref, time_tab_ref, q_ref, k_ref, v_ref, o_ref, *, cfg: KernelConfig):
    """One (query block, head): o = sum over visited key blocks of SiLU(s)/max_len masked @ v."""
    b = cfg.block
    n = pl.program_id(0)
    q = q_ref[...]
    q_idx = query_side(n * b, segq_ref, posq_ref, qtsq_ref, b)

    def body(m, acc):
        start = pl.multiple_of(m * b, b)
        k = k_ref[pl.ds(start, b), :]
        v = v_ref[pl.ds(start, b), :]
        k_idx = load_key_side((segk_ref, posk_ref, tsk_ref), start, b)
        s, mask = block_scores(q, k, q_idx, k_idx, pos_tab_ref, time_tab_ref, cfg)
        p = jnp.where(mask, s * jax.nn.sigmoid(s) * (1.0 / cfg.max_len), 0.0)
        return acc + jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)

    acc0 = jnp.zeros(q.shape, jnp.float32)
    acc = jax.lax.fori_loop(kv_lo_ref[n], kv_hi_ref[n], body, acc0)
    o_ref[...] = acc.astype(o_ref.dtype)


def forward_call(cfg: KernelConfig, q, k, v, pos_tab, time_tab, side: Side) -> jax.Array:
    """The forward pallas_call on padded inputs q, k, v [Tp, H, Dp]; returns [Tp, H, Dp]."""
    tp, heads, dp = q.shape
    sp = specs(cfg, tp, dp)
    tab = lambda x: pl.BlockSpec(x.shape, lambda n, h: (0,))
    return pl.pallas_call(
        functools.partial(_fwd_kernel, cfg=cfg),
        grid=(tp // cfg.block, heads),
        in_specs=[sp["ranges"], sp["ranges"], sp["tok"], sp["tok"], sp["tok"], sp["side"],
                  sp["side"], sp["side"], tab(pos_tab), tab(time_tab), sp["tile"], sp["whole"],
                  sp["whole"]],
        out_specs=sp["tile"],
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        interpret=cfg.interpret,
        compiler_params=cfg.compiler_params(),
        name="hstu_attention_fwd",
    )(side.kv_lo, side.kv_hi, side.seg, side.pos, side.qts, side.seg, side.pos, side.ts,
      pos_tab, time_tab, q, k, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention(cfg: KernelConfig, q, k, v, pos_tab, time_tab, side: Side) -> jax.Array:
    return forward_call(cfg, q, k, v, pos_tab, time_tab, side)


def _attention_fwd(cfg, q, k, v, pos_tab, time_tab, side):
    out = forward_call(cfg, q, k, v, pos_tab, time_tab, side)
    return out, (q, k, v, pos_tab, time_tab, side)


def _attention_bwd(cfg, res, d_out):
    q, k, v, pos_tab, time_tab, side = res
    dq, dk, dv, d_pos, d_time = backward(cfg, q, k, v, pos_tab, time_tab, side, d_out)
    d_side = jax.tree.map(lambda _: None, side)
    return dq, dk, dv, d_pos, d_time, d_side


_attention.defvjp(_attention_fwd, _attention_bwd)


def hstu_attention_pallas(
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
    interpret: bool = False,
    block: int | None = None,
) -> jax.Array:
    """Fused HSTU attention (forward and custom-VJP backward); contract of `hstu_attention`.

    Args:
      q, k, v: [T, H, D] float32 / bfloat16; offsets int32 [B+1]; bias arguments optional.
      interpret: run the kernels in Pallas interpret mode (CPU).
      block: tokens per block, a multiple of 16 and a power of two (default by max_len).
    Returns:
      [T, H, D] in q's dtype.
    """
    num_tokens, _, head_dim = q.shape
    b = block or default_block(max_len)
    if b % 16 or b & (b - 1):
        raise ValueError(f"hstu_attention_pallas: block={b} must be a power of two >= 16")
    cfg = KernelConfig(
        block=b, max_len=int(max_len), num_seq=offsets.shape[0] - 1, num_tokens=num_tokens,
        head_dim=head_dim, use_pos=pos_bias is not None, use_time=time_bias is not None,
        divisor=float(time_bucket_divisor), interpret=interpret,
    )
    side = prepare_side(offsets, positions, timestamps, query_timestamps, cfg)
    tp = side.seg.shape[0]
    dp = max(16, pl.next_power_of_2(head_dim))
    pad = lambda x: jnp.pad(x, ((0, tp - num_tokens), (0, 0), (0, dp - head_dim)))
    # Absent tables become a zero [1] table, never read by the kernels (cfg.use_* is False).
    pos_tab = jnp.zeros((1,), jnp.float32) if pos_bias is None else pos_bias.astype(jnp.float32)
    time_tab = jnp.zeros((1,), jnp.float32) if time_bias is None else time_bias.astype(jnp.float32)
    out = _attention(cfg, pad(q), pad(k), pad(v), pos_tab, time_tab, side)
    return out[:num_tokens, :, :head_dim]
