"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation"), in the form of the
HSTU reference's baseline (research/modeling/sequential/sasrec.py): causal softmax multi-head
attention with learned positions, trained with sampled softmax on L2-normalised embeddings.

One block: q = LN(x); h = LN(q + MHA(q, x, x)); x' = h + W2 dropout(ReLU(W1 h)) (dropouts as in
the reference); outputs zeroed at padding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.models.layers import Dense, KeyChain, dropout, layer_norm
from scaling_rec.models.sequential import SequentialRecommender, TokenView, jagged_to_padded, padded_to_jagged


def causal_softmax_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array, valid_BxL: jax.Array,
                             rate: float, key: jax.Array | None) -> jax.Array:
    """softmax(q kᵀ / sqrt(d) + causal/padding mask) v with dropout on the weights; [B, L, H, K].

    Written out (not jax.nn.dot_product_attention) because the reference drops attention weights.
    A query with no valid key (padding) gets zeros.
    """
    length = q_BxLxHxK.shape[1]
    s = jnp.einsum("bnhd,bmhd->bhnm", q_BxLxHxK, k_BxLxHxK) / math.sqrt(q_BxLxHxK.shape[-1])
    mask = jnp.tril(jnp.ones((length, length), bool))[None] & valid_BxL[:, None, :]
    s = jnp.where(mask[:, None], s, jnp.finfo(s.dtype).min)
    w = jax.nn.softmax(s, axis=-1)
    w = jnp.where(mask[:, None], w, jnp.zeros_like(w))
    w = dropout(w, rate, key)
    return jnp.einsum("bhnm,bmhd->bnhd", w, v_BxLxHxK)


class SASRecBlock(nnx.Module):
    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, rngs: nnx.Rngs) -> None:
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        init = nnx.initializers.xavier_normal()
        self.q = Dense(embed_dim, embed_dim, ("embed", "heads"), rngs, init=init)
        self.k = Dense(embed_dim, embed_dim, ("embed", "heads"), rngs, init=init)
        self.v = Dense(embed_dim, embed_dim, ("embed", "heads"), rngs, init=init)
        self.o = Dense(embed_dim, embed_dim, ("heads", "embed"), rngs, init=init)
        self.ffn_in = Dense(embed_dim, ffn_dim, ("embed", "mlp"), rngs, init=init)
        self.ffn_out = Dense(ffn_dim, embed_dim, ("mlp", "embed"), rngs, init=init)

    def __call__(self, x: jax.Array, view: TokenView, max_len: int, rate: float, keys: KeyChain) -> jax.Array:
        q_in = layer_norm(x, 1e-8)
        lead, h = x.shape[:-1], self.num_heads
        q, k, v = (t.reshape(lead + (h, t.shape[-1] // h)) for t in (self.q(q_in), self.k(x), self.v(x)))
        if view.jagged:
            qp, kp, vp = (jagged_to_padded(t, view, max_len) for t in (q, k, v))
            valid = jagged_to_padded(view.valid, view, max_len)
            attn = padded_to_jagged(causal_softmax_attention(qp, kp, vp, valid, rate, keys.next()), view)
        else:
            attn = causal_softmax_attention(q, k, v, view.valid, rate, keys.next())
        hidden = layer_norm(q_in + self.o(attn.reshape(lead + (-1,))), 1e-8)
        ffn = jax.nn.relu(self.ffn_in(hidden))
        ffn = self.ffn_out(dropout(ffn, rate, keys.next()))
        return hidden + dropout(ffn, rate, keys.next())


class SASRec(SequentialRecommender):
    """SASRec encoder over user histories (model.family = 'sasrec')."""

    def __init__(self, num_items: int, *, embed_dim: int, num_blocks: int, num_heads: int, ffn_dim: int,
                 max_len: int, dropout_rate: float, l2_norm: bool, rngs: nnx.Rngs) -> None:
        super().__init__(num_items, embed_dim, max_len, dropout_rate, l2_norm, rngs)
        self.blocks = nnx.List([SASRecBlock(embed_dim, num_heads, ffn_dim, rngs) for _ in range(num_blocks)])

    def encode(self, view: TokenView, keys: KeyChain) -> jax.Array:
        x = self.embed_inputs(view, keys)
        for block in self.blocks:
            x = block(x, view, self.max_len, self.dropout_rate, keys)
            x = jnp.where(view.valid[..., None], x, jnp.zeros_like(x))
        return x
