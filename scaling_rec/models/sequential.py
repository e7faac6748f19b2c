"""What the sequential retrieval models (HSTU, SASRec) share: the input layer, the two batch
layouts, and the scoring table.

A model maps a batch (jagged [T] or padded [B, L]) to one L2-normalised vector per token; the same
item table scores every item (shared input/output embeddings, Kang & McAuley 2018 §3.4).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.data.jagged import Batch, JaggedBatch, PaddedBatch
from scaling_rec.models.layers import Embedding, KeyChain, dropout, l2_normalize, param


@dataclasses.dataclass(frozen=True)
class TokenView:
    """The fields of a batch that every layer needs, in the batch's own layout.

    ids, positions, timestamps, query_timestamps: int32 [T] or [B, L]; valid: bool, same shape.
    offsets: int32 [B+1] (jagged) or None; lengths: int32 [B] (padded) or None.
    """

    ids: jax.Array
    positions: jax.Array
    timestamps: jax.Array
    query_timestamps: jax.Array
    valid: jax.Array
    offsets: jax.Array | None
    segment_ids: jax.Array | None
    lengths: jax.Array | None

    @property
    def jagged(self) -> bool:
        return self.offsets is not None


def token_view(batch: Batch) -> TokenView:
    if isinstance(batch, JaggedBatch):
        num_slots = batch.offsets_B1.shape[0] - 1
        return TokenView(
            ids=batch.item_ids_T,
            positions=batch.positions_T,
            timestamps=batch.timestamps_T,
            query_timestamps=batch.query_timestamps_T,
            valid=batch.segment_ids_T < num_slots,
            offsets=batch.offsets_B1,
            segment_ids=batch.segment_ids_T,
            lengths=None,
        )
    if isinstance(batch, PaddedBatch):
        max_len = batch.item_ids_BxL.shape[1]
        return TokenView(
            ids=batch.item_ids_BxL,
            positions=batch.positions_BxL,
            timestamps=batch.timestamps_BxL,
            query_timestamps=batch.query_timestamps_BxL,
            valid=jnp.arange(max_len)[None, :] < batch.lengths_B[:, None],
            offsets=None,
            segment_ids=None,
            lengths=batch.lengths_B,
        )
    raise TypeError(f"expected a JaggedBatch or PaddedBatch, got {type(batch).__name__}")


def jagged_to_padded(x_TxD: jax.Array, view: TokenView, max_len: int) -> jax.Array:
    """Scatter jagged tokens into a [B, L, D] grid (padding tokens dropped); returns x_BxLxD."""
    num_slots = view.offsets.shape[0] - 1
    grid = jnp.zeros((num_slots + 1, max_len) + x_TxD.shape[1:], x_TxD.dtype)
    pos = jnp.minimum(view.positions, max_len - 1)
    grid = grid.at[view.segment_ids, pos].set(x_TxD, mode="drop")
    return grid[:num_slots]


def padded_to_jagged(x_BxLxD: jax.Array, view: TokenView) -> jax.Array:
    """Gather a [B, L, D] grid back to jagged tokens; padding tokens get zeros."""
    seg = jnp.minimum(view.segment_ids, x_BxLxD.shape[0] - 1)
    out = x_BxLxD[seg, jnp.minimum(view.positions, x_BxLxD.shape[1] - 1)]
    mask = view.valid.reshape(view.valid.shape + (1,) * (out.ndim - 1))
    return jnp.where(mask, out, jnp.zeros_like(out))


class SequentialRecommender(nnx.Module):
    """Base: item table, learned position table, and the input/output conventions.

    Input (reference LearnablePositionalEmbeddingInputFeaturesPreprocessor): x = sqrt(D)·e_item +
    e_pos, dropout, zeroed at padding. Output: L2-normalised per token when `l2_norm`.
    """

    def __init__(self, num_items: int, embed_dim: int, max_len: int, dropout_rate: float, l2_norm: bool,
                 rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        self.num_items = num_items
        # The dtype of the encoder's products and of the loss's scoring product (layers.MATMUL_DTYPES).
        self.matmul_dtype = matmul_dtype
        self.embed_dim = embed_dim
        self.max_len = max_len
        self.dropout_rate = dropout_rate
        self.l2_norm = l2_norm
        # Row 0 = padding; Embedding pads the rows to a multiple of 64 (never looked up, sampled or scored).
        self.items = Embedding(num_items + 1, embed_dim, rngs)
        self.pos = param(rngs, nnx.initializers.truncated_normal(0.02), (max_len, embed_dim), ("seq", "embed"))

    def embed_inputs(self, view: TokenView, keys: KeyChain) -> jax.Array:
        x = self.items(view.ids) * math.sqrt(self.embed_dim)
        x = x + jnp.take(self.pos[...], jnp.minimum(view.positions, self.max_len - 1), axis=0)
        x = dropout(x, self.dropout_rate, keys.next())
        return jnp.where(view.valid[..., None], x, jnp.zeros_like(x))

    def finish(self, x: jax.Array) -> jax.Array:
        return l2_normalize(x) if self.l2_norm else x

    def item_embeddings(self) -> jax.Array:
        """The scoring table [num_items + 1, D] (row 0 = padding), normalised like the outputs."""
        table = self.items.table[: self.num_items + 1]
        return l2_normalize(table) if self.l2_norm else table

    def encode(self, view: TokenView, keys: KeyChain) -> jax.Array:
        raise NotImplementedError

    def __call__(self, batch: Batch, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Per-token user vectors: [T, D] for a jagged batch, [B, L, D] for a padded one."""
        view = token_view(batch)
        x = self.encode(view, KeyChain(dropout_key))
        x = self.finish(x)
        return jnp.where(view.valid[..., None], x, jnp.zeros_like(x))
