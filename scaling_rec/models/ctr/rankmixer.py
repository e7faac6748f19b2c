"""RankMixer (Zhu et al. 2025, "RankMixer: Scaling Up Ranking Models in Industrial Recommenders", §3).

Tokenization (§3.2): the field embeddings (and dense features, if any) are concatenated into e [E],
zero-padded to T·c and cut into T consecutive chunks of width c = ceil(E / T); chunk t is projected to
a token x_t [D] by its own weights (the chunks hold different features). On Frappe (10 fields of width
10) T = 10 makes one token per field, T = 5 one token per pair of fields.

RankMixer block (§3.3, Eq. 1), X [T, D] -> X' [T, D]:
  S  = LN(TokenMixing(X) + X)
  X' = LN(PFFN(S) + S)
TokenMixing is parameter-free: every token is split into H heads of D / H, and output token h is the
concatenation of head h of all T tokens (s^h = [x_1^h, ..., x_T^h]). The paper sets H = T so that the
mixed tokens keep width D and the residual applies; so does this module (D must be a multiple of T).
PFFN gives every token its own two-layer FFN: v_t = W_t2 GELU(W_t1 s_t + b_t1) + b_t2 with W_t1 [D, kD],
W_t2 [kD, D] (k = ffn_mult; the paper uses k = 4). After L blocks the tokens are mean-pooled and an
output MLP (the task tower) gives the logit. The Sparse-MoE variant (§3.4) is not built.

The last block's output norm has no bias when the output MLP starts with batch norm: the mean-pool and
the bias-free first dense layer pass a constant shift through, and batch norm removes it, so that
bias's gradient would be zero up to rounding (Adam would turn the rounding into +-lr steps).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.errors import ConfigError
from scaling_rec.models.ctr import CtrFamily, Rung
from scaling_rec.models.ctr_common import MLP, FieldEmbedding, mlp_flops
from scaling_rec.models.layers import KeyChain, LayerNorm, affine_layer_norm, dropout, param

_PER_TOKEN_INIT = nnx.initializers.xavier_uniform(batch_axis=(0,))  # fans of each token's own matrix


def token_mixing(x_BxTxD: jax.Array, num_heads: int) -> jax.Array:
    """Multi-head token mixing (§3.3.1): [B, T, D] -> [B, H, T·D/H]; output token h = head h of every
    input token, in token order. Parameter-free (a reshape and a transpose)."""
    b, t, d = x_BxTxD.shape
    heads_BxTxHxK = x_BxTxD.reshape(b, t, num_heads, d // num_heads)
    return heads_BxTxHxK.transpose(0, 2, 1, 3).reshape(b, num_heads, t * (d // num_heads))


def per_token_dense(x_BxTxI: jax.Array, w_TxIxO: jax.Array, b_TxO: jax.Array | None = None) -> jax.Array:
    """y_t = x_t W_t (+ b_t) with separate weights per token: [B, T, I] -> [B, T, O]."""
    y_BxTxO = jnp.einsum("bti,tio->bto", x_BxTxI, w_TxIxO)
    return y_BxTxO if b_TxO is None else y_BxTxO + b_TxO[None]


class PerTokenFFN(nnx.Module):
    """PFFN (§3.3.2): token t's own Dense(D, kD) -> GELU -> dropout -> Dense(kD, D)."""

    def __init__(self, num_tokens: int, dim: int, mult: int, dropout_rate: float, rngs: nnx.Rngs) -> None:
        self.w1 = param(rngs, _PER_TOKEN_INIT, (num_tokens, dim, mult * dim), ("fields", "embed", "mlp"))
        self.b1 = param(rngs, nnx.initializers.zeros, (num_tokens, mult * dim), ("fields", "mlp"))
        self.w2 = param(rngs, _PER_TOKEN_INIT, (num_tokens, mult * dim, dim), ("fields", "mlp", "embed"))
        self.b2 = param(rngs, nnx.initializers.zeros, (num_tokens, dim), ("fields", "embed"))
        self.dropout_rate = dropout_rate

    def __call__(self, x_BxTxD: jax.Array, *, train: bool, keys: KeyChain) -> jax.Array:
        h_BxTxH = jax.nn.gelu(per_token_dense(x_BxTxD, self.w1[...], self.b1[...]))
        h_BxTxH = dropout(h_BxTxH, self.dropout_rate, keys.next() if train else None)
        return per_token_dense(h_BxTxH, self.w2[...], self.b2[...])


class RankMixerBlock(nnx.Module):
    """One RankMixer block (Eq. 1): X [T, D] -> LN(PFFN(S) + S), S = LN(TokenMixing(X) + X)."""

    def __init__(self, num_tokens: int, dim: int, mult: int, dropout_rate: float, rngs: nnx.Rngs, *,
                 out_bias: bool = True) -> None:
        self.num_tokens = num_tokens
        self.mix_norm = LayerNorm(dim, rngs, axis="embed")
        self.ffn = PerTokenFFN(num_tokens, dim, mult, dropout_rate, rngs)
        self.out_norm = LayerNorm(dim, rngs, axis="embed") if out_bias else None
        self.out_scale = None if out_bias else param(rngs, nnx.initializers.ones, (dim,), ("embed",))
        self.out_norm_eps = 1e-6

    def __call__(self, x_BxTxD: jax.Array, *, train: bool, keys: KeyChain) -> jax.Array:
        s_BxTxD = self.mix_norm(token_mixing(x_BxTxD, self.num_tokens) + x_BxTxD)
        y_BxTxD = self.ffn(s_BxTxD, train=train, keys=keys) + s_BxTxD
        if self.out_norm is not None:
            return self.out_norm(y_BxTxD)
        return affine_layer_norm(y_BxTxD, self.out_scale[...], None, self.out_norm_eps)


class RankMixer(nnx.Module):
    """RankMixer CTR model: cat_BxF (+ num_BxM) -> logits_B (module docstring)."""

    def __init__(self, vocab_sizes: tuple[int, ...], num_dense: int, *, embed_dim: int, num_tokens: int,
                 token_dim: int, num_layers: int, ffn_mult: int, mlp_width: int, mlp_depth: int, norm: str,
                 dropout_rate: float, rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        if token_dim % num_tokens:
            raise ConfigError(f"RankMixer: 'model.token_dim' = {token_dim} must be a multiple of 'model.num_tokens' "
                              f"= {num_tokens} (token mixing splits each token into T heads, §3.3.1).")
        self.embedding = FieldEmbedding(vocab_sizes, embed_dim, rngs)
        self.input_dim = len(vocab_sizes) * embed_dim + num_dense
        self.num_tokens, self.chunk = num_tokens, math.ceil(self.input_dim / num_tokens)
        self.tokenizer = param(rngs, _PER_TOKEN_INIT, (num_tokens, self.chunk, token_dim), ("fields", None, "embed"))
        self.tokenizer_bias = param(rngs, nnx.initializers.zeros, (num_tokens, token_dim), ("fields", "embed"))
        pooled_feeds_bn = norm == "batch" and mlp_depth > 0
        self.blocks = nnx.List([
            RankMixerBlock(num_tokens, token_dim, ffn_mult, dropout_rate, rngs,
                           out_bias=not (i == num_layers - 1 and pooled_feeds_bn))
            for i in range(num_layers)
        ])
        self.head = MLP(token_dim, mlp_width, mlp_depth, 1, rngs, norm=norm, dropout_rate=dropout_rate,
                        matmul_dtype=matmul_dtype)  # the per-token einsums stay float32

    def tokens(self, cat_BxF: jax.Array, num_BxM: jax.Array | None = None) -> jax.Array:
        """X_0 [B, T, D]: the concatenated features cut into T chunks, each projected by its own weights."""
        emb_BxFxD = self.embedding(cat_BxF)
        e_BxE = emb_BxFxD.reshape(emb_BxFxD.shape[0], -1)
        if num_BxM is not None and self.input_dim > e_BxE.shape[1]:
            e_BxE = jnp.concatenate([e_BxE, num_BxM], axis=1)
        e_BxE = jnp.pad(e_BxE, ((0, 0), (0, self.num_tokens * self.chunk - self.input_dim)))
        chunks_BxTxC = e_BxE.reshape(e_BxE.shape[0], self.num_tokens, self.chunk)
        return per_token_dense(chunks_BxTxC, self.tokenizer[...], self.tokenizer_bias[...])

    def __call__(self, cat_BxF: jax.Array, num_BxM: jax.Array | None = None, *, train: bool = False,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        keys = KeyChain(dropout_key)
        x_BxTxD = self.tokens(cat_BxF, num_BxM)
        for block in self.blocks:
            x_BxTxD = block(x_BxTxD, train=train, keys=keys)
        return self.head(jnp.mean(x_BxTxD, axis=1), train=train, keys=keys)[:, 0]


__all__ = ["PerTokenFFN", "RankMixer", "RankMixerBlock", "per_token_dense", "token_mixing"]


def forward_flops(m, num_fields: int, num_dense: int) -> float:
    """The tokenizer (T chunks of ceil(E / T) of the E concatenated inputs, each projected to D), per layer the
    per-token FFNs 2 · 2 · T · D · kD (token mixing is a reshape), and the output MLP on the mean-pooled token."""
    t, d = m.num_tokens, m.token_dim
    inputs = num_fields * m.embed_dim + num_dense
    tokenize = 2.0 * t * math.ceil(inputs / t) * d
    return tokenize + m.num_layers * 4.0 * t * d * m.ffn_mult * d + mlp_flops(d, m.mlp_width, m.mlp_depth, 1)


FAMILY = CtrFamily(
    name="rankmixer",
    keys={"num_tokens": 10, "token_dim": 40, "ffn_mult": 4, "num_layers": 2},
    build=lambda m, vocab_sizes, num_dense, common: RankMixer(
        vocab_sizes, num_dense, num_tokens=m.num_tokens, token_dim=m.token_dim, num_layers=m.num_layers,
        ffn_mult=m.ffn_mult, **common),
    forward_flops=forward_flops,
    ladder={"r0": Rung({"num_tokens": 5, "token_dim": 20, "num_layers": 1, "ffn_mult": 2, "mlp_width": 64,
                 "mlp_depth": 1}, 11_933),
            "r1": Rung({"num_tokens": 5, "token_dim": 40, "num_layers": 2, "ffn_mult": 2, "mlp_width": 128,
                 "mlp_depth": 1}, 75_185),
            "r2": Rung({"num_tokens": 10, "token_dim": 40, "num_layers": 2, "ffn_mult": 4, "mlp_width": 128,
                 "mlp_depth": 1}, 270_185),
            "r3": Rung({"num_tokens": 10, "token_dim": 80, "num_layers": 2, "ffn_mult": 4, "mlp_width": 256,
                 "mlp_depth": 2}, 1_128_657),
            "r4": Rung({"num_tokens": 10, "token_dim": 160, "num_layers": 2, "ffn_mult": 4, "mlp_width": 256,
                 "mlp_depth": 2}, 4_238_497),
            "r5": Rung({"num_tokens": 10, "token_dim": 320, "num_layers": 3, "ffn_mult": 4, "mlp_width": 512,
                 "mlp_depth": 2}, 25_091_265)},
    ladder_doc="Zhu et al. 2025 (§4) scale RankMixer by the token width D and the token count T at L = 2 "
               "(100M: D = 768, T = 16; 1B: D = 1536, T = 32) with per-token FFNs kD wide; our rungs grow D, "
               "then L, with T = 5 or 10 (Frappe's 10 fields).",
    positive=("num_tokens", "token_dim", "ffn_mult", "num_layers"),
    in_run_id_at_default=False,  # added after the Wukong/DLRM/DCNv2 results were stored
    tiny={"num_tokens": 2, "token_dim": 8},
)
