"""Batches for training and evaluation, built by grain in a background thread.

The order of examples in epoch e is a seeded permutation; packing that order gives the epoch's
batches. A global step therefore names one batch deterministically, which is what makes resume
exact: after a restart at step s, the pipeline starts at batch s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from scaling_rec.data.jagged import (
    Batch,
    SequenceExample,
    pack_jagged,
    pad_examples,
    plan_fixed,
    plan_packs,
)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """Static batch geometry: the shapes jit sees.

    layout: 'jagged' (flat tokens, B slots, T tokens) or 'padded' ([B, L]).
    batch_size: B, sequences per batch. max_len: L, longest sequence.
    tokens_per_batch: T for the jagged layout.
    """

    layout: str
    batch_size: int
    max_len: int
    tokens_per_batch: int

    def __post_init__(self) -> None:
        if self.layout not in ("jagged", "padded"):
            raise ValueError(f"layout must be 'jagged' or 'padded', got {self.layout!r}")


def auto_tokens_per_batch(lengths: np.ndarray, batch_size: int, max_len: int, multiple: int = 64) -> int:
    """A token budget T that a batch of B random examples exceeds rarely (mean + 3 standard deviations).

    Returns T rounded up to `multiple`, at least max_len and at most batch_size * max_len.
    """
    mean, std = float(np.mean(lengths)), float(np.std(lengths))
    t = batch_size * mean + 3.0 * math.sqrt(batch_size) * std
    t = max(t, max_len)
    t = min(int(math.ceil(t / multiple)) * multiple, batch_size * max_len)
    return max(t, max_len)


def epoch_plan(lengths: np.ndarray, spec: BatchSpec, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """The batches (example index arrays) of one epoch."""
    n = len(lengths)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    if spec.layout == "jagged":
        return plan_packs(lengths, order, spec.batch_size, spec.tokens_per_batch)
    return plan_fixed(order, spec.batch_size)


def make_batch(examples: Sequence[SequenceExample], spec: BatchSpec, time_origin: int = 0) -> Batch:
    if spec.layout == "jagged":
        return pack_jagged(examples, spec.batch_size, spec.tokens_per_batch, time_origin)
    return pad_examples(examples, spec.batch_size, spec.max_len, time_origin)


def example_lengths(examples: Sequence[SequenceExample]) -> np.ndarray:
    """int64 [N], each example's length: the sequence's own `lengths` when it knows them without building
    its examples (scaling_rec/data/stream.py's, over a prepared log), else len() of every example."""
    known = getattr(examples, "lengths", None)
    return np.array([len(e) for e in examples], np.int64) if known is None else np.asarray(known, np.int64)


class TrainStream:
    """An endless, resumable stream of training batches over `examples`.

    Batches are built by a grain pipeline (source of index arrays → map to a batch) with a thread
    prefetch, so building batch s+1 overlaps the train step on batch s.
    """

    def __init__(
        self,
        examples: Sequence[SequenceExample],
        spec: BatchSpec,
        seed: int,
        time_origin: int = 0,
        prefetch: int = 4,
        lengths: np.ndarray | None = None,
    ) -> None:
        """lengths: int64 [N], each example's length when known without reading it (a prepared log's)."""
        self.examples = examples
        self.spec = spec
        self.seed = seed
        self.time_origin = time_origin
        self.prefetch = prefetch
        self.lengths = example_lengths(examples) if lengths is None else lengths
        self._plans: dict[int, list[np.ndarray]] = {}

    def plan(self, epoch: int) -> list[np.ndarray]:
        if epoch not in self._plans:
            self._plans = {epoch: epoch_plan(self.lengths, self.spec, self.seed, epoch)}
        return self._plans[epoch]

    def batches_per_epoch(self, epoch: int = 0) -> int:
        return len(self.plan(epoch))

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, index within the epoch) of global step `step`."""
        epoch = 0
        while step >= len(self.plan(epoch)):
            step -= len(self.plan(epoch))
            epoch += 1
        return epoch, step

    def _build(self, idx: np.ndarray) -> Batch:
        return make_batch([self.examples[i] for i in idx], self.spec, self.time_origin)

    def iterate(self, start_step: int = 0) -> Iterator[Batch]:
        """Batches from global step `start_step` on, forever."""
        epoch, index = self.locate(start_step)
        while True:
            groups = self.plan(epoch)[index:]
            ds = grain.MapDataset.source(groups).map(self._build).to_iter_dataset(read_options(self.prefetch))
            if self.prefetch:
                ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=self.prefetch)
            yield from ds
            epoch, index = epoch + 1, 0


def eval_batches(examples: Sequence[SequenceExample], spec: BatchSpec, time_origin: int = 0) -> Iterator[Batch]:
    """Every example exactly once, in order (no shuffle), with a thread prefetch."""
    groups = epoch_plan(example_lengths(examples), spec, seed=0, epoch=0, shuffle=False)
    ds = grain.MapDataset.source(groups).map(
        lambda idx: make_batch([examples[i] for i in idx], spec, time_origin)
    )
    yield from grain.experimental.ThreadPrefetchIterDataset(ds.to_iter_dataset(read_options(4)),
                                                            prefetch_buffer_size=4)


def read_options(prefetch: int) -> grain.ReadOptions:
    """grain's read options for a batch pipeline: `prefetch` batches built ahead by 2 threads (none, in the
    caller's thread, for prefetch = 0). grain's defaults (16 threads, 500 elements ahead) would hold up to
    500 built batches: a whole epoch of a small log, gigabytes at batch 1024 x length 200 (issue 18)."""
    return grain.ReadOptions(num_threads=2 if prefetch else 0, prefetch_buffer_size=prefetch)


NESTED_SUBSET_SEED = 0
"""The permutation behind `nested_subset` is a property of the data, not of a run's seed: every run of a
data-scaling study, whatever its model seed, trains on the same users at a given fraction."""


def nested_subset(n: int, fraction: float, seed: int = NESTED_SUBSET_SEED) -> np.ndarray:
    """Indices (sorted, int64) of the first ceil(fraction·n) entries of a fixed seeded permutation of n.

    Nested: for f1 < f2 the subset at f1 is contained in the one at f2 (both are prefixes of one
    permutation), so a data-scaling study adds users and never swaps them. fraction in (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * n - 1e-9))
    return np.sort(np.random.default_rng(seed).permutation(n)[:k]).astype(np.int64)
