"""Backward Pallas kernels of HSTU attention: dq (+ the bias tables' gradients) and dk, dv.

With P = mask * SiLU(S) / max_len and out = P V (no softmax, so no saved statistics):
  dV = P^T dO,  dP = dO V^T,  dS = mask * dP * SiLU'(S) / max_len,  dQ = dS K,  dK = dS^T Q,
  SiLU'(s) = sigmoid(s) * (1 + s * (1 - sigmoid(s))).
Table gradients: d pos_bias[r] = sum over (i, j, h) with rel(i, j) = r of dS_h[i, j], and the
same with the time bucket. The dq kernel reduces them inside each tile: for every table row r
between the tile's smallest and largest index (at most 2 * block - 1 rows of the position table
for contiguous positions, a few time buckets), it sums dS where the index is r and adds that one
number to the float32 table gradient with a scalar `atomic_add`. No T x W buffer and no
scatter of T x max_len elements: an earlier version wrote dS into a [T, ~max_len] buffer and
scatter-added it in XLA, which made fwd+bwd 100x slower than the forward on an H200
(benchmarks/results/hstu_attention_gpu_h200_v1.json).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from scaling_rec.kernels.hstu_pallas_layout import (
    KernelConfig,
    Side,
    bias_indices,
    block_scores,
    load_key_side,
    query_side,
    specs,
)


def _silu_grad(s: jax.Array) -> jax.Array:
    """d SiLU(s) / ds = sigmoid(s) (1 + s (1 - sigmoid(s)))."""
    sig = jax.nn.sigmoid(s)
    return sig * (1.0 + s * (1.0 - sig))


def _add_to_table(dtab_ref, idx: jax.Array, ds: jax.Array, mask: jax.Array) -> None:
    """dtab[r] += sum(ds[idx == r]) for every r the tile's masked entries index (float32 atomics).

    idx int32 [b, b]; ds float32 [b, b], zero outside mask; mask bool [b, b].
    """
    lo = jnp.min(jnp.where(mask, idx, jnp.int32(2**30)))
    hi = jnp.max(jnp.where(mask, idx, jnp.int32(-1)))

    def body(r, carry):
        plgpu.atomic_add(dtab_ref, (r,), jnp.sum(jnp.where(idx == r, ds, 0.0)))
        return carry

    jax.lax.fori_loop(lo, hi + 1, body, jnp.int32(0))


def _dq_kernel(kv_lo_ref, kv_hi_ref, segq_ref, posq_ref, qtsq_ref, segk_ref, posk_ref, tsk_ref,
               pos_tab_ref, time_tab_ref, q_ref, k_ref, v_ref, do_ref, dpos_in_ref, dtime_in_ref,
               dq_ref, dpos_ref, dtime_ref, *, cfg: KernelConfig):
    """One (query block, head): dq over the visited key blocks; dS added into the table grads."""
    del dpos_in_ref, dtime_in_ref  # aliased with dpos_ref, dtime_ref (zero-initialised)
    b = cfg.block
    n = pl.program_id(0)
    q, do = q_ref[...], do_ref[...]
    q_idx = query_side(n * b, segq_ref, posq_ref, qtsq_ref, b)

    def body(m, acc):
        start = pl.multiple_of(m * b, b)
        k = k_ref[pl.ds(start, b), :]
        v = v_ref[pl.ds(start, b), :]
        k_idx = load_key_side((segk_ref, posk_ref, tsk_ref), start, b)
        s, mask = block_scores(q, k, q_idx, k_idx, pos_tab_ref, time_tab_ref, cfg)
        dp = jax.lax.dot_general(do, v, (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32)
        ds = jnp.where(mask, dp * _silu_grad(s) * (1.0 / cfg.max_len), 0.0)
        rel, bucket = bias_indices(q_idx, k_idx, time_tab_ref.shape[0] - 1, cfg)
        if rel is not None:
            _add_to_table(dpos_ref, rel, ds, mask)
        if bucket is not None:
            _add_to_table(dtime_ref, bucket, ds, mask)
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
    common = dict(interpret=cfg.interpret, compiler_params=cfg.compiler_params())
    d_out = d_out.astype(q.dtype)
    dpos0, dtime0 = jnp.zeros_like(pos_tab), jnp.zeros_like(time_tab)

    dq, d_pos, d_time = pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg),
        grid=grid,
        in_specs=[sp["ranges"], sp["ranges"], sp["tok"], sp["tok"], sp["tok"], sp["side"],
                  sp["side"], sp["side"], tab(pos_tab), tab(time_tab), sp["tile"], sp["whole"],
                  sp["whole"], sp["tile"], tab(dpos0), tab(dtime0)],
        out_specs=[sp["tile"], tab(dpos0), tab(dtime0)],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct(dpos0.shape, jnp.float32),
                   jax.ShapeDtypeStruct(dtime0.shape, jnp.float32)],
        input_output_aliases={14: 1, 15: 2},
        name="hstu_attention_bwd_dq",
        **common,
    )(side.kv_lo, side.kv_hi, side.seg, side.pos, side.qts, side.seg, side.pos, side.ts,
      pos_tab, time_tab, q, k, v, d_out, dpos0, dtime0)

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

    return dq, dk, dv, d_pos, d_time
