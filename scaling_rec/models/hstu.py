"""HSTU: Hierarchical Sequential Transduction Units (Zhai et al. 2024, "Actions Speak Louder than
Words", §3; reference: facebookresearch/generative-recommenders, research/modeling/sequential/hstu.py).

One block (eqs. 1-3 of the paper):
  U, V, Q, K = split(SiLU(LN(x) W_uvqk))                       no 1/sqrt(d) scaling
  A(X)V      = Σ_{j ≤ i} SiLU(q_i·k_j + rab(i, j)) / n · v_j   pointwise, causal, n = max length
  x'         = W_o dropout(LN(A(X)V) ⊙ U) + x
rab = learned table over relative positions + learned table over log-bucketed time gaps (optional:
the Amazon S3-Rec files carry no timestamps).

matmul_dtype = 'bfloat16' (mixed precision, issue 17): W_uvqk and W_o take bfloat16 operands with float32
accumulation (layers.matmul), and q, k, v enter the attention in bfloat16: the Pallas kernel's tensor-core
inputs, and the jagged XLA path's tile products (q k^T, p v and the backward's five, float32 sums); the padded
path computes from them in float32. Parameters, norms, SiLU and the residual stream stay float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.kernels import hstu_attention
from scaling_rec.kernels.hstu_reference import relative_bias
from scaling_rec.models.layers import Dense, KeyChain, check_matmul_dtype, dropout, layer_norm, matmul, param
from scaling_rec.models.sequential import SequentialRecommender, TokenView


def padded_hstu_attention(
    q_BxLxHxK: jax.Array,
    k_BxLxHxK: jax.Array,
    v_BxLxHxV: jax.Array,
    view: TokenView,
    max_len: int,
    pos_bias: jax.Array | None,
    time_bias: jax.Array | None,
    time_bucket_divisor: float,
) -> jax.Array:
    """Dense HSTU attention on a padded [B, L] batch (the padded baseline); returns [B, L, H, V] in q's dtype,
    computed in float32 (as the jagged XLA path)."""
    dtype = q_BxLxHxK.dtype
    q_BxLxHxK, k_BxLxHxK, v_BxLxHxV = (t.astype(jnp.float32) for t in (q_BxLxHxK, k_BxLxHxK, v_BxLxHxV))
    length = q_BxLxHxK.shape[1]
    s_BxHxLxL = jnp.einsum("bnhd,bmhd->bhnm", q_BxLxHxK, k_BxLxHxK)
    bias_BxLxL = relative_bias(
        view.positions[:, :, None], view.positions[:, None, :], max_len=max_len, pos_bias=pos_bias,
        qts_q=view.query_timestamps[:, :, None], ts_k=view.timestamps[:, None, :], time_bias=time_bias,
        divisor=time_bucket_divisor,
    )
    if bias_BxLxL is not None:
        s_BxHxLxL = s_BxHxLxL + bias_BxLxL[:, None]
    causal = jnp.tril(jnp.ones((length, length), bool))
    mask_BxLxL = causal[None] & view.valid[:, None, :] & view.valid[:, :, None]
    a = jax.nn.silu(s_BxHxLxL) / max_len
    a = jnp.where(mask_BxLxL[:, None], a, jnp.zeros_like(a))
    return jnp.einsum("bhnm,bmhd->bnhd", a, v_BxLxHxV).astype(dtype)


class HSTUBlock(nnx.Module):
    """One HSTU layer; see the module docstring. Weights: W_uvqk [D, H·(2·dv + 2·dqk)], W_o [H·dv, D]."""

    def __init__(self, embed_dim: int, num_heads: int, qk_dim: int, v_dim: int, max_len: int,
                 time_bias: bool, num_time_buckets: int, rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        check_matmul_dtype(matmul_dtype)
        self.num_heads, self.qk_dim, self.v_dim = num_heads, qk_dim, v_dim
        self.matmul_dtype = matmul_dtype
        width = num_heads * (2 * v_dim + 2 * qk_dim)
        self.uvqk = param(rngs, nnx.initializers.normal(0.02), (embed_dim, width), ("embed", "mlp"))
        self.out = Dense(num_heads * v_dim, embed_dim, ("mlp", "embed"), rngs, matmul_dtype=matmul_dtype)
        self.pos_bias = param(rngs, nnx.initializers.normal(0.02), (2 * max_len - 1,), (None,))
        self.time_bias = (
            param(rngs, nnx.initializers.normal(0.02), (num_time_buckets + 1,), (None,)) if time_bias else None
        )

    def __call__(self, x: jax.Array, view: TokenView, max_len: int, divisor: float, dropout_rate: float,
                 keys: KeyChain, impl: str = "auto") -> jax.Array:
        h, dqk, dv = self.num_heads, self.qk_dim, self.v_dim
        uvqk = jax.nn.silu(matmul(layer_norm(x), self.uvqk[...], self.matmul_dtype))
        u, v, q, k = jnp.split(uvqk, [h * dv, 2 * h * dv, 2 * h * dv + h * dqk], axis=-1)
        lead = x.shape[:-1]
        q, k, v = (t.reshape(lead + (h, t.shape[-1] // h)).astype(self.matmul_dtype) for t in (q, k, v))
        time_bias = self.time_bias[...] if self.time_bias is not None else None
        if view.jagged:
            # positions=None: a jagged token's position is its index in its sequence (data.jagged.pack_jagged),
            # which the kernels derive from the offsets; the XLA path then shares each tile's position bias.
            attn = hstu_attention(
                q, k, v, view.offsets, max_len=max_len, positions=None,
                pos_bias=self.pos_bias[...], timestamps=view.timestamps if time_bias is not None else None,
                query_timestamps=view.query_timestamps if time_bias is not None else None,
                time_bias=time_bias, time_bucket_divisor=divisor, impl=impl,
            )
        else:
            attn = padded_hstu_attention(q, k, v, view, max_len, self.pos_bias[...], time_bias, divisor)
        attn = attn.reshape(lead + (h * dv,)).astype(jnp.float32)
        y = layer_norm(attn) * u
        return self.out(dropout(y, dropout_rate, keys.next())) + x


class HSTU(SequentialRecommender):
    """HSTU encoder over user histories (model.family = 'hstu')."""

    def __init__(self, num_items: int, *, embed_dim: int, num_blocks: int, num_heads: int, qk_dim: int,
                 v_dim: int, max_len: int, dropout_rate: float, time_bias: bool, num_time_buckets: int,
                 time_bucket_divisor: float, l2_norm: bool, rngs: nnx.Rngs, attention_impl: str = "auto",
                 matmul_dtype: str = "float32") -> None:
        super().__init__(num_items, embed_dim, max_len, dropout_rate, l2_norm, rngs, matmul_dtype)
        self.divisor = time_bucket_divisor
        self.attention_impl = attention_impl
        self.blocks = nnx.List([
            HSTUBlock(embed_dim, num_heads, qk_dim, v_dim, max_len, time_bias, num_time_buckets, rngs, matmul_dtype)
            for _ in range(num_blocks)
        ])

    def encode(self, view: TokenView, keys: KeyChain) -> jax.Array:
        x = self.embed_inputs(view, keys)
        for block in self.blocks:
            x = block(x, view, self.max_len, self.divisor, self.dropout_rate, keys, self.attention_impl)
            x = jnp.where(view.valid[..., None], x, jnp.zeros_like(x))
        return x
