"""Analytic FLOPs and parameter counts of every family: the one source of truth for budgets (DESIGN "Budget").

Sequential retrievers (HSTU, SASRec): forward_flops / block_flops / loss_flops; CTR models:
ctr_forward_flops, which indexes the formula each family's module declares (scaling_rec/models/ctr/); TIGER:
tiger_forward_flops; parameters of any model: param_counts. Each formula is
checked against XLA's cost analysis (tests/test_flops.py, tests/ctr/test_models.py,
tests/models/test_rankmixer.py, tests/tiger/test_tiger_flops.py).

Conventions: a multiply-add is 2 FLOPs; only matrix products are counted (layer norms, activations
and softmax are O(tokens·width) and ignored, as in Kaplan et al. 2020 §2.1 and Hoffmann et al.
2022 App. F); embedding lookups cost 0; training FLOPs = TRAIN_MULTIPLIER (3) × forward FLOPs. The
sequential forward includes the training loss's scoring of each target against the items the loss defines
(1 + num_negatives, or every item for the full softmax; 2·D per scored item).

Budgets count model FLOPs, not executed ones: attention over the causal (query, key) pairs of the real
tokens (layout 'jagged'), whatever layout, kernel or loss path runs the step. The device may execute more,
and by a ratio that depends on the size: the padded layout and SASRec's attention compute the whole
max_len² grid, the attention kernels whole tiles, the sampled softmax's dense path (GPU, small catalogues)
every item's logit, and the scoring pads D to a multiple of 16. Counting those would make C a property of
the implementation rather than of the model, and the families' budgets incomparable. layout 'padded'
gives the dense grid's count, which tests/test_flops.py checks against XLA's cost analysis of the padded
step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec.models import ctr
from scaling_rec.models.layers import Embedding

TRAIN_MULTIPLIER = 3.0
# Lookup tables that are plain parameters rather than a layers.Embedding: the sequential models' positions.
_POSITION_TABLES = ("pos",)


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    n_dense: int
    n_emb: int

    @property
    def total(self) -> int:
        return self.n_dense + self.n_emb


def _size(tree: Any) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def param_counts(model: nnx.Module) -> ParamCounts:
    """N_dense and N_emb of a model of any family (works on an abstract model from nnx.eval_shape).

    One rule for every family: N_emb is the rows that ids can reach of every embedding table
    (scaling_rec.models.layers.Embedding.num_rows: items and row 0 = padding of HSTU/SASRec, every field's
    values of the CTR models, TIGER's code, user and BOS tokens) times their width, plus the position table
    'pos' of the sequential models. A table's padding to a multiple of TABLE_ROW_MULTIPLE rows only lets it
    split evenly over a mesh; no id reaches it, so it is in neither count. N_dense is every other nnx.Param
    (relative-position biases included; BatchNorm statistics are not parameters).
    """
    n_dense = n_emb = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
        size = int(np.prod(leaf.shape))
        if str(getattr(path[0], "key", path[0])) in _POSITION_TABLES:
            n_emb += size
        else:
            n_dense += size
    for _, node in nnx.iter_graph(model):
        if isinstance(node, Embedding):
            n_dense -= _size(nnx.state(node, nnx.Param))
            n_emb += node.num_rows * node.table.shape[1]
    return ParamCounts(n_dense=n_dense, n_emb=n_emb)


def attention_pairs(lengths: np.ndarray, layout: str, max_len: int) -> float:
    """(query, key) pairs the attention computes for sequences of `lengths`.

    jagged: the causal pairs n(n+1)/2 of each sequence (the model's pairs: what every budget counts);
    padded: max_len² per sequence (what dense attention over the padded grid executes; XLA cross-checks).
    """
    lengths = np.asarray(lengths, np.float64)
    if layout == "jagged":
        return float(np.sum(lengths * (lengths + 1) / 2))
    if layout == "padded":
        return float(len(lengths) * max_len * max_len)
    raise ValueError(f"unknown layout {layout!r}")


def block_flops(model_cfg: ml_collections.ConfigDict, tokens: float, pairs: float) -> float:
    """Forward FLOPs of the encoder blocks for `tokens` tokens and `pairs` attention pairs."""
    d, h, blocks = model_cfg.embed_dim, model_cfg.num_heads, model_cfg.num_blocks
    if model_cfg.family == "hstu":
        dqk, dv = model_cfg.qk_dim, model_cfg.v_dim
        per_token = 2 * d * h * (2 * dv + 2 * dqk) + 2 * h * dv * d
        per_pair = 2 * h * dqk + 2 * h * dv
    elif model_cfg.family == "sasrec":
        per_token = 4 * 2 * d * d + 2 * 2 * d * model_cfg.ffn_dim
        per_pair = 2 * d + 2 * d
    else:
        raise ValueError(f"unknown model.family {model_cfg.family!r}")
    return blocks * (per_token * tokens + per_pair * pairs)


def scored_per_target(train_cfg: ml_collections.ConfigDict, num_items: int) -> int:
    """Items each training target token is scored against: 1 + num_negatives for the sampled softmax,
    every item (num_items) for the full softmax (train.loss)."""
    return num_items if train_cfg.loss == "full_softmax" else 1 + train_cfg.num_negatives


def loss_flops(model_cfg: ml_collections.ConfigDict, targets: float, scored: int) -> float:
    """Softmax scoring: each target token scores `scored` items (scored_per_target), 2·D FLOPs each."""
    return 2.0 * model_cfg.embed_dim * scored * targets


def forward_flops(model_cfg: ml_collections.ConfigDict, lengths: np.ndarray, targets: float, layout: str,
                  max_len: int, scored: int) -> float:
    """Forward FLOPs (blocks + training loss) of a set of sequences with `lengths` tokens."""
    lengths = np.asarray(lengths)
    tokens = float(lengths.sum()) if layout == "jagged" else float(len(lengths) * max_len)
    pairs = attention_pairs(lengths, layout, max_len)
    return block_flops(model_cfg, tokens, pairs) + loss_flops(model_cfg, targets, scored)


def tiger_forward_flops(config: ml_collections.ConfigDict, length: int) -> float:
    """Forward FLOPs of one TIGER example (teacher forcing; scaling_rec.tiger_config): a history of
    S = 1 + data.max_items · length tokens (user token + the items' codes) and T = length target codes.

    Per layer and token: the Q, K, V and O projections, 2 · 4 · D · HK (HK = heads × head_dim), and the FFN,
    2 · 2 · D · F. Attention: 2 · 2 · HK per (query, key) pair (scores and weighted sum) over the pairs the
    dense attention computes, masked ones included (a causal mask saves nothing). Output: each of the T
    positions scores ids.codebook_size codes, 2 · D each (the collision level is no wider).

    encdec: num_layers encoder layers over S × S pairs; num_layers decoder layers over T × T self pairs and
    T × S cross pairs, plus the cross-attention's Q, O (per target) and K, V (per history token) projections.
    deconly: 2 · num_layers decoder layers. The history passes through all of them with S × S pairs, except
    that of the last layer only its keys and values are used (by the targets), so XLA drops its queries,
    attention, output projection and FFN, and so does this count; the T targets attend to S + T keys in
    every layer. Counting the history's last layer in full (and S + T tokens over (S + T)² / 2 pairs, as
    before) gave 1.26-1.35× XLA's count at D = 32 and 1.60× at D = 128 (tests/tiger/test_tiger_flops.py).
    """
    m = config.model
    S, T = 1 + config.data.max_items * length, length
    inner = m.num_heads * m.head_dim
    qkvo, kv = 2 * 4 * m.d_model * inner, 2 * 2 * m.d_model * inner
    per_token = qkvo + 2 * 2 * m.d_model * m.d_ff

    def attention(queries: int, keys: int) -> int:
        return 2 * 2 * queries * keys * inner

    output = 2 * T * m.d_model * config.ids.codebook_size
    if m.arch == "encdec":
        encoder = m.num_layers * (S * per_token + attention(S, S))
        decoder = m.num_layers * (T * (per_token + qkvo - kv) + S * kv + attention(T, T) + attention(T, S))
        return float(encoder + decoder + output)
    layers = 2 * m.num_layers
    history = (layers - 1) * (S * per_token + attention(S, S)) + S * kv
    targets = layers * (T * per_token + attention(T, S + T))
    return float(history + targets + output)


def ctr_forward_flops(model_cfg: Any, num_fields: int, num_dense: int = 0) -> float:
    """Forward FLOPs per example of a CTR model (scaling_rec.ctr_config's model section, or any object with
    its attributes; widths may be per-layer sequences) over `num_fields` categorical fields and `num_dense`
    dense features: the formula its family declares (scaling_rec/models/ctr/<family>.py, `forward_flops`).
    Wukong and DLRM embed the dense features as one more field through the bottom MLP (counted); DCNv2 and
    RankMixer concatenate them to the embeddings."""
    return float(ctr.get(model_cfg.family).forward_flops(model_cfg, num_fields, num_dense))
