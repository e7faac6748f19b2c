"""TIGER generative retriever (Rajput et al. 2023, Sec. 3.2 and 4.1): a T5-style encoder-decoder in NNX that
reads the semantic-ID tokens of a user's recent items and generates the next item's semantic ID.

Paper shape: 4 encoder + 4 decoder layers, d_model 128, 6 heads x 64, FFN 1024 (ReLU), dropout 0.1; the user
id hashed into 2,000 tokens leads the input; inputs are the tokens of the last 20 items. T5 conventions:
pre-norm RMSNorm without bias, no biases in projections, bucketed relative position bias per head (Raffel
et al. 2020, Sec. 2.1; shared by the layers of a stack), input and output token embeddings tied (logits
scaled by d_model^-0.5).

Token ids (one shared table, rows = 'vocab'): 0 padding; 1 + offset_p + c for code c at ID position p
(offset_p = sum of earlier positions' vocab sizes); then the 2,000 user buckets; then BOS.

Both architectures split into `context(history)` (per-layer key/values the generated tokens attend to) and
`target_hidden(context, tokens)`, so training (teacher forcing) and beam search share one code path:
- 'encdec': context = the encoder output projected to each decoder layer's cross-attention keys/values;
- 'deconly' (same width, 2 x num_layers layers): context = the causal self-attention keys/values of the
  history prefix (a prefix cache); the generated tokens attend to it and causally to each other.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec.errors import ConfigError
from scaling_rec.models.layers import Dense, Embedding, KeyChain, dropout, param
from scaling_rec.tiger_config import ARCHS

NEG = -1e9


@dataclasses.dataclass(frozen=True)
class TigerSpec:
    """Model shape (hashable, static under jit); the defaults (the paper's, Sec. 4.1) are the config's
    (scaling_rec.tiger_config), `model_spec` reads them from there."""

    arch: str
    d_model: int
    num_layers: int  # per stack; 'deconly' has 2 x num_layers decoder layers
    num_heads: int
    head_dim: int
    d_ff: int
    dropout: float
    user_buckets: int
    rel_buckets: int
    rel_max_distance: int


def model_spec(config: ml_collections.ConfigDict) -> TigerSpec:
    """The hashable model shape of a TIGER config's `model` section."""
    return TigerSpec(**{k: v for k, v in config.model.to_dict().items() if k != "family"})


def relative_bucket(rel: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
    """T5 relative-position buckets of `rel` = key position - query position (Raffel et al. 2020, Sec. 2.1):
    exact buckets for small |rel|, logarithmic up to `max_distance`; half the buckets per sign if bidirectional."""
    rel = np.asarray(rel, np.int64)
    n, out = num_buckets, np.zeros_like(rel)
    if bidirectional:
        n //= 2
        out += (rel > 0) * n
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = n // 2
    large = exact + (np.log(np.maximum(rel, 1) / exact) / math.log(max_distance / exact) * (n - exact)).astype(np.int64)
    return out + np.where(rel < exact, rel, np.minimum(large, n - 1))


class RMSNorm(nnx.Module):
    """T5 layer norm: x / rms(x) * scale, no mean subtraction and no bias."""

    def __init__(self, dim: int, rngs: nnx.Rngs) -> None:
        self.scale = param(rngs, nnx.initializers.ones, (dim,), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)
        return x * self.scale[...].reshape((1,) * (x.ndim - 1) + (-1,))


class Attention(nnx.Module):
    """Multi-head attention whose keys/values may come from elsewhere: q [B,T,D], k/v [B,S,H,K] -> [B,T,D]."""

    def __init__(self, d_model: int, heads: int, head_dim: int, rngs: nnx.Rngs) -> None:
        inner = heads * head_dim
        self.q = Dense(d_model, inner, ("embed", "qkv"), rngs, use_bias=False)
        self.k = Dense(d_model, inner, ("embed", "qkv"), rngs, use_bias=False)
        self.v = Dense(d_model, inner, ("embed", "qkv"), rngs, use_bias=False)
        self.o = Dense(inner, d_model, ("qkv", "embed"), rngs, use_bias=False)
        self.heads, self.head_dim = heads, head_dim

    def kv(self, x_BxSxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        B, S, _ = x_BxSxD.shape
        shape = (B, S, self.heads, self.head_dim)
        return self.k(x_BxSxD).reshape(shape), self.v(x_BxSxD).reshape(shape)

    def __call__(self, x_BxTxD: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array, allowed_BxTxS: jax.Array,
                 bias_HxTxS: jax.Array | None) -> jax.Array:
        B, T, _ = x_BxTxD.shape
        q_BxTxHxK = self.q(x_BxTxD).reshape(B, T, self.heads, self.head_dim)
        logits_BxHxTxS = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK, k_BxSxHxK) / math.sqrt(self.head_dim)
        if bias_HxTxS is not None:
            logits_BxHxTxS = logits_BxHxTxS + bias_HxTxS[None]
        logits_BxHxTxS = jnp.where(allowed_BxTxS[:, None], logits_BxHxTxS, NEG)
        w = jax.nn.softmax(logits_BxHxTxS, axis=-1)
        out = jnp.einsum("bhts,bshk->bthk", w, v_BxSxHxK).reshape(B, T, self.heads * self.head_dim)
        return self.o(out)


class FeedForward(nnx.Module):
    """ReLU MLP D -> F -> D without biases (T5)."""

    def __init__(self, d_model: int, d_ff: int, rngs: nnx.Rngs) -> None:
        self.wi = Dense(d_model, d_ff, ("embed", "mlp"), rngs, use_bias=False)
        self.wo = Dense(d_ff, d_model, ("mlp", "embed"), rngs, use_bias=False)

    def __call__(self, x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
        return self.wo(dropout(jax.nn.relu(self.wi(x)), rate, key))


class Block(nnx.Module):
    """Pre-norm T5 block: self-attention, optional cross-attention, feed-forward; residual dropout."""

    def __init__(self, c: TigerSpec, rngs: nnx.Rngs, *, cross: bool) -> None:
        self.norm1 = RMSNorm(c.d_model, rngs)
        self.attn = Attention(c.d_model, c.num_heads, c.head_dim, rngs)
        self.norm_x = RMSNorm(c.d_model, rngs) if cross else None
        self.cross = Attention(c.d_model, c.num_heads, c.head_dim, rngs) if cross else None
        self.norm2 = RMSNorm(c.d_model, rngs)
        self.ffn = FeedForward(c.d_model, c.d_ff, rngs)
        self.rate = c.dropout

    def self_kv(self, x_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.attn.kv(self.norm1(x_BxTxD))

    def __call__(self, x: jax.Array, self_kv: tuple[jax.Array, jax.Array], allowed: jax.Array, bias: jax.Array,
                 cross_kv: tuple | None, cross_allowed: jax.Array | None, keys: KeyChain) -> jax.Array:
        x = x + dropout(self.attn(self.norm1(x), *self_kv, allowed, bias), self.rate, keys.next())
        if self.cross is not None:
            x = x + dropout(self.cross(self.norm_x(x), *cross_kv, cross_allowed, None), self.rate, keys.next())
        return x + dropout(self.ffn(self.norm2(x), self.rate, keys.next()), self.rate, keys.next())


class Tiger(nnx.Module):
    """TIGER retriever (module docstring). Inputs: history tokens [B, S] (0 = padding, left-padded) and the
    generated/teacher tokens [B, L] (BOS, c_0, .., c_{L-2}); output logits [B, L, V_max] over each position's codes.
    """

    def __init__(self, c: TigerSpec, vocab_sizes: tuple[int, ...], rngs: nnx.Rngs) -> None:
        if c.arch not in ARCHS:
            raise ConfigError(f"tiger.model.arch={c.arch!r}: choose one of {ARCHS}.")
        self.c, self.vocab_sizes = c, tuple(int(v) for v in vocab_sizes)
        self.length, self.vmax = len(self.vocab_sizes), max(self.vocab_sizes)
        offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]])
        self.item_vocab = int(sum(self.vocab_sizes))
        self.user_offset = 1 + self.item_vocab
        self.bos = self.user_offset + c.user_buckets
        rows = np.zeros((self.length, self.vmax), np.int32)
        for p, (o, v) in enumerate(zip(offsets, self.vocab_sizes, strict=True)):
            rows[p, :v] = 1 + o + np.arange(v)
        self.code_rows = nnx.Variable(jnp.asarray(rows))  # [L, V_max] table row of code v at position p
        self.code_valid = nnx.Variable(jnp.asarray(rows > 0))
        self.num_token_rows = self.bos + 1
        # Embedding pads the rows to a multiple of 64 (as the other families' tables); never looked up or scored.
        self.embed = Embedding(self.num_token_rows, c.d_model, rngs, stddev=1.0)
        n_enc, n_dec = (c.num_layers, c.num_layers) if c.arch == "encdec" else (0, 2 * c.num_layers)
        self.encoder = nnx.List([Block(c, rngs, cross=False) for _ in range(n_enc)])
        self.decoder = nnx.List([Block(c, rngs, cross=c.arch == "encdec") for _ in range(n_dec)])
        self.enc_norm = RMSNorm(c.d_model, rngs) if n_enc else None
        self.dec_norm = RMSNorm(c.d_model, rngs)
        self.enc_bias = param(rngs, nnx.initializers.normal(0.1), (c.rel_buckets, c.num_heads), (None, "heads"))
        self.dec_bias = param(rngs, nnx.initializers.normal(0.1), (c.rel_buckets, c.num_heads), (None, "heads"))

    # -- helpers ------------------------------------------------------------------------------
    def token_ids(self, codes_BxL: jax.Array) -> jax.Array:
        """Table rows of codes [.., L] (per-position codes -> shared-vocabulary token ids)."""
        return jnp.take_along_axis(jnp.broadcast_to(self.code_rows[...], codes_BxL.shape[:-1] + self.code_rows.shape),
                                   codes_BxL[..., None], axis=-1)[..., 0]

    def _bias(self, table: nnx.Param, q_pos: np.ndarray, k_pos: np.ndarray, bidirectional: bool) -> jax.Array:
        b = relative_bucket(k_pos[None, :] - q_pos[:, None], bidirectional, self.c.rel_buckets, self.c.rel_max_distance)
        return jnp.transpose(jnp.take(table[...], jnp.asarray(b), axis=0), (2, 0, 1))  # [H, T, S]

    def _drop(self, x: jax.Array, keys: KeyChain) -> jax.Array:
        return dropout(x, self.c.dropout, keys.next())

    # -- the two halves -------------------------------------------------------------------------
    def context(self, history_BxS: jax.Array, key: jax.Array | None = None) -> dict[str, Any]:
        """Per-decoder-layer key/values of the history (and its padding mask [B, S])."""
        keys = KeyChain(key)
        mask_BxS = history_BxS > 0
        S = history_BxS.shape[1]
        x = self._drop(self.embed(history_BxS), keys)
        if self.c.arch == "encdec":
            allowed = jnp.broadcast_to(mask_BxS[:, None, :], (x.shape[0], S, S))
            bias = self._bias(self.enc_bias, np.arange(S), np.arange(S), True)
            for blk in self.encoder:
                x = blk(x, blk.self_kv(x), allowed, bias, None, None, keys)
            memory = self._drop(self.enc_norm(x), keys)
            return {"kv": [blk.cross.kv(memory) for blk in self.decoder], "mask": mask_BxS}
        causal = np.tril(np.ones((S, S), bool))
        allowed = mask_BxS[:, None, :] & jnp.asarray(causal)[None]
        bias = self._bias(self.dec_bias, np.arange(S), np.arange(S), False)
        kvs = []
        for blk in self.decoder:
            kv = blk.self_kv(x)
            kvs.append(kv)
            x = blk(x, kv, allowed, bias, None, None, keys)
        return {"kv": kvs, "mask": mask_BxS}

    def target_hidden(self, ctx: dict[str, Any], tokens_BxT: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Hidden states [B, T, D] of the generated tokens (causal among themselves) given the context."""
        keys = KeyChain(key)
        B, T = tokens_BxT.shape
        x = self._drop(self.embed(tokens_BxT), keys)
        causal_TxT = jnp.asarray(np.tril(np.ones((T, T), bool)))
        mask_BxS = ctx["mask"]
        S = mask_BxS.shape[1]
        if self.c.arch == "encdec":
            allowed = jnp.broadcast_to(causal_TxT[None], (B, T, T))
            bias = self._bias(self.dec_bias, np.arange(T), np.arange(T), False)
            cross_allowed = jnp.broadcast_to(mask_BxS[:, None, :], (B, T, S))
            for blk, kv in zip(self.decoder, ctx["kv"], strict=True):
                x = blk(x, blk.self_kv(x), allowed, bias, kv, cross_allowed, keys)
        else:
            allowed = jnp.concatenate([jnp.broadcast_to(mask_BxS[:, None, :], (B, T, S)),
                                       jnp.broadcast_to(causal_TxT[None], (B, T, T))], axis=2)
            bias = self._bias(self.dec_bias, S + np.arange(T), np.arange(S + T), False)
            for blk, (k, v) in zip(self.decoder, ctx["kv"], strict=True):
                k2, v2 = blk.self_kv(x)
                x = blk(x, (jnp.concatenate([k, k2], 1), jnp.concatenate([v, v2], 1)), allowed, bias, None, None,
                        keys)
        return self._drop(self.dec_norm(x), keys)

    def logits_at(self, h_BxTxD: jax.Array, positions: jax.Array | int) -> jax.Array:
        """Logits [B, T, V_max] of each position's codes (tied embeddings x d_model^-0.5); -1e9 past V_p."""
        rows_TxV = self.code_rows[...][positions]
        valid_TxV = self.code_valid[...][positions]
        if rows_TxV.ndim == 1:
            rows_TxV, valid_TxV = rows_TxV[None], valid_TxV[None]
        table_TxVxD = jnp.take(self.embed.table[...], rows_TxV, axis=0)
        logits = jnp.einsum("btd,tvd->btv", h_BxTxD, table_TxVxD) * self.c.d_model**-0.5
        return jnp.where(valid_TxV[None], logits, NEG)

    def decoder_inputs(self, codes_BxL: jax.Array) -> jax.Array:
        """Teacher-forcing inputs [B, L]: BOS then the tokens of codes[:, :L-1]."""
        bos = jnp.full(codes_BxL.shape[:-1] + (1,), self.bos, jnp.int32)
        return jnp.concatenate([bos, self.token_ids(codes_BxL)[..., :-1]], axis=-1)

    def __call__(self, history_BxS: jax.Array, codes_BxL: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Teacher forcing: logits [B, L, V_max] of the target codes [B, L] given the history tokens [B, S]."""
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        h = self.target_hidden(self.context(history_BxS, k1), self.decoder_inputs(codes_BxL), k2)
        return self.logits_at(h, jnp.arange(self.length))

    def step_logits(self, ctx: dict[str, Any], codes_BxWxL: jax.Array, t: int) -> jax.Array:
        """Beam-search step: logits [B, W, V_max] of position t given codes[..., :t] (ctx already per beam)."""
        B, W, L = codes_BxWxL.shape
        h = self.target_hidden(ctx, self.decoder_inputs(codes_BxWxL.reshape(B * W, L))[:, : t + 1])
        return self.logits_at(h[:, t : t + 1], t).reshape(B, W, self.vmax)


def repeat_context(ctx: dict[str, Any], beams: int) -> dict[str, Any]:
    """Each example's context repeated for its `beams` beams (rows b*W .. b*W+W-1)."""
    return jax.tree.map(lambda a: jnp.repeat(a, beams, axis=0), ctx)


def history_tokens(model_codes: np.ndarray, history_items: list[np.ndarray], users: np.ndarray, vocab_sizes,
                   user_buckets: int, max_items: int) -> np.ndarray:
    """Left-padded encoder inputs int32 [B, 1 + max_items * L]: [pad.., user token, tokens of the last items].

    model_codes: [num_items + 1, L] semantic IDs; users: their ids (hashed into `user_buckets` by modulo,
    as the paper's hashing trick; ids are already random in the S3-Rec form).
    """
    L = model_codes.shape[1]
    offsets = np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]])
    S = 1 + max_items * L
    out = np.zeros((len(history_items), S), np.int32)
    user_tok = 1 + int(sum(vocab_sizes)) + (np.asarray(users, np.int64) % user_buckets)
    for b, items in enumerate(history_items):
        items = np.asarray(items)[-max_items:]
        toks = (1 + offsets[None, :] + model_codes[items]).reshape(-1)
        out[b, S - toks.size :] = toks
        out[b, S - toks.size - 1] = user_tok[b]
    return out
