"""Backward Pallas kernels of HSTU attention: dq (+ dS for the bias tables) and dk, dv.

With P = mask * SiLU(S) / max_len and out = P V (no softmax, so no saved statistics):
  dV = P^T dO,  dP = dO V^T,  dS = mask * dP * SiLU'(S) / max_len,  dQ = dS K,  dK = dS^T Q,
  SiLU'(s) = sigmoid(s) * (1 + s * (1 - sigmoid(s))).
Table gradients: d pos_bias[r] = sum over (i, j, h) with rel(i, j) = r of dS_h[i, j], and the
same with the time bucket. The dq kernel adds dS (summed over heads by `atomic_add` on float32
tiles) into a windowed buffer G [Tp, W], W = (ceil((max_len-1)/block) + 1) * block: query token
t, column c is key token (t // block - nw + 1) * block + c. XLA then scatter-adds G into the two
tables. G is O(T * (max_len + block)) float32 memory, linear in T, never T x T.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from scaling_rec.kernels.hstu_pallas import (
    KernelConfig,
    Side,
    block_scores,
    load_key_side,
    query_side,
    specs,
)
from scaling_rec.kernels.hstu_reference import time_bucket


def _silu_grad(s: jax.Array) -> jax.Array:
    """d SiLU(s) / ds = sigmoid(s) (1 + s (1 - sigmoid(s)))."""
    sig = jax.nn.sigmoid(s)
    return sig * (1.0 + s * (1.0 - sig))


def _dq_kernel(kv_lo_ref, kv_hi_ref, segq_ref, posq_ref, qtsq_ref, segk_ref, posk_ref, tsk_ref,
               pos_tab_ref, time_tab_ref, q_ref, k_ref, v_ref, do_ref, g_in_ref, dq_ref, g_ref,
               *, cfg: KernelConfig):
    """One (query block, head): dq over the visited key blocks; dS added into G's rows."""
    del g_in_ref  # aliased with g_ref (zero-initialised accumulator)
    b = cfg.block
    n = pl.program_id(0)
    q, do = q_ref[...], do_ref[...]
    q_idx = query_side(n * b, segq_ref, posq_ref, qtsq_ref, b)
    need_g = cfg.use_pos or cfg.use_time

    def body(m, acc):
        start = pl.multiple_of(m * b, b)
        k = k_ref[pl.ds(start, b), :]
        v = v_ref[pl.ds(start, b), :]
        k_idx = load_key_side((segk_ref, posk_ref, tsk_ref), start, b)
        s, mask = block_scores(q, k, q_idx, k_idx, pos_tab_ref, time_tab_ref, cfg)
        dp = jax.lax.dot_general(do, v, (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32)
        ds = jnp.where(mask, dp * _silu_grad(s) * (1.0 / cfg.max_len), 0.0)
        if need_g:
            col = pl.multiple_of((m - n + cfg.num_window_blocks - 1) * b, b)
            plgpu.atomic_add(g_ref, (slice(None), pl.ds(col, b)), ds)
        return acc + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

    acc = jax.lax.fori_loop(kv_lo_ref[n], kv_hi_ref[n], body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = acc.astype(dq_ref.dtype)


def _dkdv_kernel(q_lo_ref, q_hi_ref, segq_ref, posq_ref, qtsq_ref, segk_ref, posk_ref, tsk_ref,
                 pos_tab_ref, time_tab_ref, q_ref, k_ref, v_ref, do_ref, dk_ref, dv_ref,
                 *, cfg: KernelConfig):
    """One (key block, head): dk and dv over the query blocks that see it."""
    b = cfg.block
    m = pl.program_id(0)
    k, v = k_ref[...], v_ref[...]
    k_start = m * b
    k_idx = (k_start + jax.lax.broadcasted_iota(jnp.int32, (1, b), 1), segk_ref[...][None, :],
             posk_ref[...][None, :], tsk_ref[...][None, :])
    t_dims = (((0,), (0,)), ((), ()))

    def body(n, carry):
        dk, dv = carry
        start = pl.multiple_of(n * b, b)
        sl = pl.ds(start, b)
        q, do = q_ref[sl, :], do_ref[sl, :]
        q_idx = (start + jax.lax.broadcasted_iota(jnp.int32, (b, 1), 0), segq_ref[sl][:, None],
                 posq_ref[sl][:, None], qtsq_ref[sl][:, None])
        s, mask = block_scores(q, k, q_idx, k_idx, pos_tab_ref, time_tab_ref, cfg)
        sig = jax.nn.sigmoid(s)
        p = jnp.where(mask, s * sig * (1.0 / cfg.max_len), 0.0)
        dv = dv + jax.lax.dot_general(p.astype(do.dtype), do, t_dims,
                                      preferred_element_type=jnp.float32)
        dp = jax.lax.dot_general(do, v, (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32)
        ds = jnp.where(mask, dp * (sig * (1.0 + s * (1.0 - sig))) * (1.0 / cfg.max_len), 0.0)
        dk = dk + jax.lax.dot_general(ds.astype(q.dtype), q, t_dims,
                                      preferred_element_type=jnp.float32)
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = jax.lax.fori_loop(q_lo_ref[m], q_hi_ref[m], body, (zeros, zeros))
    dk_ref[...] = dk.astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _table_grads(
    cfg: KernelConfig, g: jax.Array, side: Side, pos_tab: jax.Array, time_tab: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Scatter-add the windowed dS buffer G [Tp, W] into the two bias tables (float32)."""
    tp, width = g.shape
    b, nw = cfg.block, cfg.num_window_blocks
    tok_q = jnp.arange(tp, dtype=jnp.int32)
    tok_k = (tok_q // b - nw + 1)[:, None] * b + jnp.arange(width, dtype=jnp.int32)[None, :]
    tok_k = jnp.clip(tok_k, 0, tp - 1)  # out-of-range columns hold zeros
    d_pos = jnp.zeros_like(pos_tab)
    d_time = jnp.zeros_like(time_tab)
    if cfg.use_pos:
        rel = jnp.clip(cfg.max_len - 1 + side.pos[tok_k] - side.pos[:, None], 0,
                       2 * cfg.max_len - 2)
        d_pos = d_pos.at[rel].add(g)
    if cfg.use_time:
        bucket = time_bucket(side.qts[:, None], side.ts[tok_k], time_tab.shape[0] - 1, cfg.divisor)
        d_time = d_time.at[bucket].add(g)
    return d_pos, d_time


def backward(
    cfg: KernelConfig, q: jax.Array, k: jax.Array, v: jax.Array, pos_tab: jax.Array,
    time_tab: jax.Array, side: Side, d_out: jax.Array,
) -> tuple[jax.Array, ...]:
    """dq, dk, dv [Tp, H, Dp] (input dtypes) and d pos_tab, d time_tab (float32)."""
    tp, heads, dp = q.shape
    b = cfg.block
    grid = (tp // b, heads)
    sp = specs(cfg, tp, dp)
    tab = lambda x: pl.BlockSpec(x.shape, lambda n, h: (0,))
    need_g = cfg.use_pos or cfg.use_time
    width = cfg.num_window_blocks * b if need_g else b
    g0 = jnp.zeros((tp if need_g else b, width), jnp.float32)
    g_spec = (pl.BlockSpec((b, width), lambda n, h: (n, 0)) if need_g
              else pl.BlockSpec((b, width), lambda n, h: (0, 0)))
    common = dict(interpret=cfg.interpret, compiler_params=cfg.compiler_params())
    d_out = d_out.astype(q.dtype)

    dq, g = pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg),
        grid=grid,
        in_specs=[sp["ranges"], sp["ranges"], sp["tok"], sp["tok"], sp["tok"], sp["side"],
                  sp["side"], sp["side"], tab(pos_tab), tab(time_tab), sp["tile"], sp["whole"],
                  sp["whole"], sp["tile"], g_spec],
        out_specs=[sp["tile"], g_spec],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct(g0.shape, g0.dtype)],
        input_output_aliases={14: 1},
        name="hstu_attention_bwd_dq",
        **common,
    )(side.kv_lo, side.kv_hi, side.seg, side.pos, side.qts, side.seg, side.pos, side.ts,
      pos_tab, time_tab, q, k, v, d_out, g0)

    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, cfg=cfg),
        grid=grid,
        in_specs=[sp["ranges"], sp["ranges"], sp["side"], sp["side"], sp["side"], sp["tok"],
                  sp["tok"], sp["tok"], tab(pos_tab), tab(time_tab), sp["whole"], sp["tile"],
                  sp["tile"], sp["whole"]],
        out_specs=[sp["tile"], sp["tile"]],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        name="hstu_attention_bwd_dkdv",
        **common,
    )(side.q_lo, side.q_hi, side.seg, side.pos, side.qts, side.seg, side.pos, side.ts,
      pos_tab, time_tab, q, k, v, d_out)

    if need_g:
        d_pos, d_time = _table_grads(cfg, g, side, pos_tab, time_tab)
    else:
        d_pos, d_time = jnp.zeros_like(pos_tab), jnp.zeros_like(time_tab)
    return dq, dk, dv, d_pos, d_time
