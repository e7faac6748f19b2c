"""Jagged (packed) and padded batches of user sequences.

A *sequence example* is one user's input items with, at every position, the item to predict next.
`pack_jagged` lays up to B examples end to end in a flat token array of static length T (the
layout of docs/CONTRACTS.md); `pad_examples` lays the same examples in a [B, L] grid. The model
sees the same tokens and targets in both, so the loss on the same examples is the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class SequenceExample:
    """One training or evaluation sequence; all arrays have the same length n >= 1.

    items: int32 [n] input item ids (>= 1). targets: int32 [n] next item at each position (0 = not
    a target). timestamps / query_timestamps: int64 [n] seconds (event time, time of the predicted
    item), or None when the dataset has no time.
    """

    items: np.ndarray
    targets: np.ndarray
    timestamps: np.ndarray | None = None
    query_timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.items.shape[0])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class JaggedBatch:
    """Packed batch: T tokens, at most B sequences (see docs/CONTRACTS.md for every field)."""

    item_ids_T: np.ndarray
    target_ids_T: np.ndarray
    timestamps_T: np.ndarray
    query_timestamps_T: np.ndarray
    positions_T: np.ndarray
    segment_ids_T: np.ndarray
    offsets_B1: np.ndarray
    num_sequences: np.ndarray

    @property
    def layout(self) -> str:
        return "jagged"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PaddedBatch:
    """Padded batch: B sequences of L slots each, right-padded with item 0."""

    item_ids_BxL: np.ndarray
    target_ids_BxL: np.ndarray
    timestamps_BxL: np.ndarray
    query_timestamps_BxL: np.ndarray
    positions_BxL: np.ndarray
    lengths_B: np.ndarray
    num_sequences: np.ndarray

    @property
    def layout(self) -> str:
        return "padded"


Batch = JaggedBatch | PaddedBatch


def _times(ex: SequenceExample, t0: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(ex)
    if ex.timestamps is None:
        zeros = np.zeros(n, np.int32)
        return zeros, zeros
    ts = (np.asarray(ex.timestamps, np.int64) - t0).astype(np.int32)
    qts = ts if ex.query_timestamps is None else (np.asarray(ex.query_timestamps, np.int64) - t0)
    return ts, np.asarray(qts, np.int32)


def pack_jagged(
    examples: Sequence[SequenceExample], max_sequences: int, max_tokens: int, time_origin: int = 0
) -> JaggedBatch:
    """Lays `examples` end to end in a flat array of `max_tokens` tokens.

    Args:
      examples: at most `max_sequences` examples whose lengths sum to at most `max_tokens`.
      max_sequences: B, the static number of sequence slots (unused slots have length 0).
      max_tokens: T, the static token budget.
      time_origin: seconds subtracted from timestamps so that they fit int32.
    """
    if len(examples) > max_sequences:
        raise ValueError(f"{len(examples)} examples do not fit {max_sequences} sequence slots")
    lengths = np.array([len(e) for e in examples], np.int64)
    total = int(lengths.sum())
    if total > max_tokens:
        raise ValueError(f"{total} tokens do not fit the token budget {max_tokens}")
    out = {
        name: np.zeros(max_tokens, np.int32)
        for name in ("item", "target", "ts", "qts", "pos")
    }
    segment = np.full(max_tokens, max_sequences, np.int32)
    offsets = np.full(max_sequences + 1, total, np.int32)
    offsets[: len(examples) + 1] = np.concatenate([[0], np.cumsum(lengths)])
    for b, ex in enumerate(examples):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        ts, qts = _times(ex, time_origin)
        out["item"][lo:hi] = ex.items
        out["target"][lo:hi] = ex.targets
        out["ts"][lo:hi] = ts
        out["qts"][lo:hi] = qts
        out["pos"][lo:hi] = np.arange(hi - lo)
        segment[lo:hi] = b
    return JaggedBatch(
        item_ids_T=out["item"],
        target_ids_T=out["target"],
        timestamps_T=out["ts"],
        query_timestamps_T=out["qts"],
        positions_T=out["pos"],
        segment_ids_T=segment,
        offsets_B1=offsets,
        num_sequences=np.asarray(len(examples), np.int32),
    )


def pad_examples(
    examples: Sequence[SequenceExample], max_sequences: int, max_len: int, time_origin: int = 0
) -> PaddedBatch:
    """Lays `examples` in a [max_sequences, max_len] grid, right-padded with zeros."""
    if len(examples) > max_sequences:
        raise ValueError(f"{len(examples)} examples do not fit {max_sequences} rows")
    shape = (max_sequences, max_len)
    item, target, ts_, qts_, pos = (np.zeros(shape, np.int32) for _ in range(5))
    lengths = np.zeros(max_sequences, np.int32)
    for b, ex in enumerate(examples):
        n = len(ex)
        if n > max_len:
            raise ValueError(f"example of length {n} exceeds max_len {max_len}")
        ts, qts = _times(ex, time_origin)
        item[b, :n], target[b, :n], ts_[b, :n], qts_[b, :n] = ex.items, ex.targets, ts, qts
        pos[b, :n] = np.arange(n)
        lengths[b] = n
    return PaddedBatch(
        item_ids_BxL=item,
        target_ids_BxL=target,
        timestamps_BxL=ts_,
        query_timestamps_BxL=qts_,
        positions_BxL=pos,
        lengths_B=lengths,
        num_sequences=np.asarray(len(examples), np.int32),
    )


def plan_packs(lengths: np.ndarray, order: np.ndarray, max_sequences: int, max_tokens: int) -> list[np.ndarray]:
    """Greedy packing: walks `order` and starts a new batch when slots or tokens run out.

    Args:
      lengths: int [N] example lengths (each <= max_tokens).
      order: int [N] the example order (e.g. a shuffled permutation).
    Returns:
      list of int arrays of example indices, in order; every example appears exactly once.
    """
    if lengths.size and int(lengths.max()) > max_tokens:
        raise ValueError(f"an example of length {int(lengths.max())} exceeds the token budget {max_tokens}")
    packs: list[np.ndarray] = []
    start, tokens = 0, 0
    lens = lengths[order]
    for i, n in enumerate(lens.tolist()):
        if i - start == max_sequences or tokens + n > max_tokens:
            packs.append(order[start:i])
            start, tokens = i, 0
        tokens += n
    if start < len(order):
        packs.append(order[start:])
    return packs


def plan_fixed(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Fixed-size batches of `batch_size` examples (the padded layout's plan); the last may be short."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
