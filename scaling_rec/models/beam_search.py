"""Constrained beam search over semantic IDs: only prefixes of existing items' IDs are ever extended.

TIGER (Rajput et al. 2023, Sec. 3.2) decodes the next item's semantic ID token by token with beam
search; an ID that is no item's ("invalid ID", Sec. 4.4) is useless for retrieval, so here decoding is
constrained by a prefix table (a trie stored as dense arrays):

  children [num_nodes, V] int32: node reached from `node` by token v, -1 when no item's ID continues so;
  item_of_node [num_nodes] int32: the item whose full ID ends at a leaf node, 0 elsewhere.

Node 0 is the root (empty prefix). All shapes are fixed (batch B, beam width W, ID length L, vocab V),
so one jit compilation serves every batch of the same shape. The score of a (partial) ID is the sum of
the model's per-position log-softmax of its tokens, sum_t log p(c_t | c_<t, history); masking invalid
tokens does not renormalise, so a full ID's score is exactly its log-likelihood under the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scaling_rec.errors import ConfigError

LogitsFn = Callable[[Any, jax.Array, int], jax.Array]
NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True, eq=False)
class PrefixTable:
    """The trie of all items' semantic IDs as dense arrays (module docstring).

    children: int32 [num_nodes, V]; item_of_node: int32 [num_nodes]; length: L tokens per ID; vocab: V.
    """

    children: np.ndarray
    item_of_node: np.ndarray
    length: int
    vocab: int

    @property
    def num_nodes(self) -> int:
        return int(self.children.shape[0])

    def arrays(self) -> tuple[jax.Array, jax.Array]:
        """(children, item_of_node) as device arrays, to pass to the jitted search (not baked in as constants)."""
        return jnp.asarray(self.children), jnp.asarray(self.item_of_node)


def build_prefix_table(codes_NxL: np.ndarray, vocab: int | None = None,
                       item_ids: np.ndarray | None = None) -> PrefixTable:
    """Builds the trie of N items' IDs.

    Args:
      codes_NxL: int tokens of each item's ID, in [0, vocab); rows must be unique (use the collision token).
      vocab: V, the token range per position (default: the largest token + 1).
      item_ids: the item id of each row (default 1..N).
    Raises:
      ConfigError: a token out of range, or two items with the same ID.
    """
    codes = np.asarray(codes_NxL, np.int64)
    n, length = codes.shape
    ids = np.arange(1, n + 1) if item_ids is None else np.asarray(item_ids, np.int64)
    vocab = int(codes.max()) + 1 if vocab is None else int(vocab)
    if codes.min() < 0 or codes.max() >= vocab:
        raise ConfigError(f"prefix table: tokens must lie in [0, {vocab}), got [{codes.min()}, {codes.max()}].")
    if len(np.unique(codes, axis=0)) != n:
        raise ConfigError("prefix table: two items share a semantic ID; append the collision token first "
                          "(scaling_rec.models.rqvae.append_collision_token).")
    # Node ids level by level: the distinct prefixes of each length, in sorted order.
    node_of_prefix = np.zeros(n, np.int64)  # node of each item's current prefix (root = 0)
    next_node = 1
    parents, tokens, childs = [], [], []
    for t in range(length):
        key = node_of_prefix * vocab + codes[:, t]
        uniq, inverse = np.unique(key, return_inverse=True)
        new_nodes = next_node + np.arange(uniq.size)
        parents.append(uniq // vocab)
        tokens.append(uniq % vocab)
        childs.append(new_nodes)
        node_of_prefix = new_nodes[inverse.reshape(-1)]
        next_node += uniq.size
    children = np.full((next_node, vocab), -1, np.int32)
    for p, v, c in zip(parents, tokens, childs, strict=True):
        children[p, v] = c
    item_of_node = np.zeros(next_node, np.int32)
    item_of_node[node_of_prefix] = ids
    return PrefixTable(children, item_of_node, length, vocab)


def beam_search(context: Any, logits_fn: LogitsFn, children_NxV: jax.Array, item_of_node_N: jax.Array, *,
                batch_size: int, beam_width: int, length: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Constrained beam search (traceable; jit it with `make_search`).

    Args:
      context: whatever `logits_fn` needs (e.g. the encoder memory of each beam).
      logits_fn: (context, tokens [B, W, L] int32, t) -> logits [B, W, V] of the token at position t given
        tokens[..., :t] (later positions hold 0 and must not matter).
      children_NxV, item_of_node_N: the prefix table.
      batch_size, beam_width, length: B, W, L (static).

    Returns:
      items [B, W] int32, best first (0 where fewer than W valid IDs exist), scores [B, W] float32 (log-lik,
      -inf for those), tokens [B, W, L] int32.
    """
    B, W = batch_size, beam_width
    V = children_NxV.shape[1]
    node_BxW = jnp.zeros((B, W), jnp.int32)
    score_BxW = jnp.broadcast_to(jnp.where(jnp.arange(W) == 0, 0.0, NEG_INF)[None, :], (B, W))
    tokens_BxWxL = jnp.zeros((B, W, length), jnp.int32)
    for t in range(length):
        logp_BxWxV = jax.nn.log_softmax(logits_fn(context, tokens_BxWxL, t).astype(jnp.float32), axis=-1)
        child_BxWxV = jnp.take(children_NxV, node_BxW, axis=0)
        alive_BxW = jnp.isfinite(score_BxW)
        valid_BxWxV = (child_BxWxV >= 0) & alive_BxW[:, :, None]
        cand_BxWV = jnp.where(valid_BxWxV, score_BxW[:, :, None] + logp_BxWxV, NEG_INF).reshape(B, W * V)
        score_BxW, idx_BxW = jax.lax.top_k(cand_BxWV, W)
        beam_BxW, tok_BxW = idx_BxW // V, idx_BxW % V
        node_BxW = jnp.take_along_axis(child_BxWxV.reshape(B, W * V), idx_BxW, axis=1)
        node_BxW = jnp.where(jnp.isfinite(score_BxW), node_BxW, 0)
        tokens_BxWxL = jnp.take_along_axis(tokens_BxWxL, beam_BxW[:, :, None], axis=1)
        tokens_BxWxL = tokens_BxWxL.at[:, :, t].set(tok_BxW)
    items_BxW = jnp.where(jnp.isfinite(score_BxW), jnp.take(item_of_node_N, node_BxW), 0)
    return items_BxW, score_BxW, tokens_BxWxL


def make_search(encode_fn: Callable[[Any, Any], Any], logits_fn: LogitsFn, *, batch_size: int, beam_width: int,
                length: int) -> Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
    """A jitted search(params, inputs, children, item_of_node) -> (items, scores, tokens) [B, W(, L)].

    `encode_fn(params, inputs)` builds the context once per batch (e.g. runs the encoder and repeats its
    output per beam); `logits_fn(context, tokens, t)` as in `beam_search`. The prefix table is an argument,
    so the compiled search does not embed it and one compilation serves every batch of the same shapes.
    """
    if beam_width < 1 or length < 1:
        raise ConfigError(f"beam search: beam_width ({beam_width}) and length ({length}) must be >= 1.")

    def search(params: Any, inputs: Any, children: jax.Array, item_of_node: jax.Array):
        context = encode_fn(params, inputs)
        return beam_search(context, logits_fn, children, item_of_node, batch_size=batch_size,
                           beam_width=beam_width, length=length)

    return jax.jit(search)


def ranks_in_beams(items_BxW: jax.Array, targets_B: jax.Array) -> jax.Array:
    """0-based rank of each target among the returned items; W (beyond every cutoff K <= W) when absent."""
    W = items_BxW.shape[1]
    hit_BxW = items_BxW == targets_B[:, None]
    first_B = jnp.argmax(hit_BxW, axis=1).astype(jnp.int32)
    return jnp.where(hit_BxW.any(axis=1), first_B, W)
