"""Training batches streamed from a prepared directory (scaling_rec/data/prepared.py) through grain.

Examples are the ones scaling_rec/train/examples.py builds in memory: a user with n >= 4 events
trains on events[:n-2] (leave-one-out keeps the last two for validation and test), inputs = those
events' most recent max_len + 1 minus the last, targets = shifted by one. Only O(users) is held in
memory (each example's length); the events are read from the shard files when a batch is built
(PreparedData.user_events), so resident memory does not grow with the number of events.

Order: epoch e visits the examples in the seeded permutation `default_rng([seed, e])` packed by
`scaling_rec.data.pipeline.epoch_plan`, so a global step names one batch, and `iterate(step)` after a
restart (kill -9 included) continues with exactly the batches an uninterrupted run would see.

Several processes: with the padded layout, process i of n builds rows [i B/n, (i+1) B/n) of every
global batch (and reads only those users' events); the processes' rows, stacked, are the global batch.
`ProcessRowsStream` yields them as `ProcessRows`, which the training loop (scaling_rec/train/engine.py)
turns into the global jax Arrays with `place_process_rows`, so that host memory and reading per process
are 1/n of the batch. The jagged layout is one process only here (a pack's token budget is global).

Evaluation (`PreparedEvalExamples`) follows scaling_rec/train/examples.py's eval_examples the same way:
a user with n >= 3 events is validated on event n-2 after the history events[:n-2] and tested on
event n-1 after events[:n-1] (the most recent max_len of each history), read when its batch is built.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from scaling_rec.data.jagged import Batch, PaddedBatch, SequenceExample
from scaling_rec.data.pipeline import BatchSpec, TrainStream, make_batch, nested_subset
from scaling_rec.data.prepared import PreparedData
from scaling_rec.data.splits import MIN_EVENTS, eval_user_indices
from scaling_rec.errors import ConfigError, MeshError
from scaling_rec.parallel.rules import DATA_PARALLEL_AXES
from scaling_rec.parallel.sharding import process_rows


class PreparedExamples:
    """The training examples of a prepared log, built on demand.

    users: int64 [N] the user of example i; lengths: int64 [N] its number of input positions.
    """

    def __init__(self, data: PreparedData, max_len: int, fraction: float = 1.0) -> None:
        """fraction < 1 keeps the nested subset of examples that config data.train_user_fraction names
        (scaling_rec.data.pipeline.nested_subset), as the in-memory path does."""
        self.data, self.max_len = data, max_len
        self.users = np.flatnonzero(data.lengths >= 4).astype(np.int64)
        if fraction < 1.0:
            self.users = self.users[nested_subset(self.users.size, fraction)]
        self.lengths = np.minimum(data.lengths[self.users] - 3, max_len)

    def __len__(self) -> int:
        return int(self.users.size)

    def __getitem__(self, i: int) -> SequenceExample:
        u = int(self.users[i])
        train_end = int(self.data.lengths[u]) - 2
        ev = self.data.user_events(u, max(0, train_end - self.max_len - 1), train_end)
        items = np.asarray(ev["items"], np.int32)
        ts = ev.get("timestamps")
        return SequenceExample(items=items[:-1], targets=items[1:], timestamps=None if ts is None else ts[:-1],
                               query_timestamps=None if ts is None else ts[1:])


class PreparedEvalExamples:
    """The validation or test examples of a prepared log, built on demand (module docstring).

    which: 'valid' or 'test'; max_users > 0 keeps max_users of the evaluated users, chosen by `pick` (config
    eval.max_users, eval.users; scaling_rec.data.splits.eval_user_indices, as the in-memory path).
    users: int64 [N] the user of example i; lengths: int64 [N] its history length.
    """

    def __init__(self, data: PreparedData, max_len: int, which: str, max_users: int = 0,
                 pick: str = "sample") -> None:
        if which not in ("valid", "test"):
            raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
        self.data, self.max_len = data, max_len
        self.held_out = 2 if which == "valid" else 1  # the target is event n - held_out
        self.users = np.flatnonzero(data.lengths >= MIN_EVENTS).astype(np.int64)
        self.users = self.users[eval_user_indices(self.users.size, max_users, pick)]
        self.lengths = np.minimum(data.lengths[self.users] - self.held_out, max_len)

    def __len__(self) -> int:
        return int(self.users.size)

    def __getitem__(self, i: int) -> SequenceExample:
        u = int(self.users[i])
        target = int(self.data.lengths[u]) - self.held_out
        ev = self.data.user_events(u, target - int(self.lengths[i]), target + 1)  # the history, then the target
        items = np.asarray(ev["items"], np.int32)
        targets = np.zeros(items.size - 1, np.int32)
        targets[-1] = items[-1]
        ts = ev.get("timestamps")
        return SequenceExample(items=items[:-1], targets=targets, timestamps=None if ts is None else ts[:-1],
                               query_timestamps=None if ts is None else ts[1:])


class PreparedStream(TrainStream):
    """An endless, resumable stream of (this process's part of the) training batches: TrainStream's epoch
    plans and step arithmetic over a prepared log's examples, each batch cut to this process's rows.

    Args:
      examples: PreparedExamples. spec: the global batch geometry. seed: the order's seed.
      time_origin: seconds subtracted from timestamps (they travel as int32).
      process_index, process_count: this process's part of every global batch (padded layout).
      prefetch: batches built ahead in a background thread (0 = none).
    """

    def __init__(self, examples: PreparedExamples, spec: BatchSpec, seed: int, time_origin: int = 0,
                 process_index: int = 0, process_count: int = 1, prefetch: int = 4) -> None:
        if process_count > 1 and spec.layout != "padded":
            raise ConfigError(f"streaming to {process_count} processes needs data.layout='padded' (the jagged "
                              "layout packs a global token budget); set --config.data.layout=padded.")
        if spec.batch_size % process_count or not 0 <= process_index < process_count:
            raise ConfigError(f"train.batch_size={spec.batch_size} must divide over {process_count} processes "
                              f"(process {process_index}).")
        super().__init__(examples, spec, seed, time_origin, prefetch, lengths=examples.lengths)
        self.process_index, self.process_count = process_index, process_count
        self.local_spec = BatchSpec(spec.layout, spec.batch_size // process_count, spec.max_len,
                                    spec.tokens_per_batch)

    def local_indices(self, global_idx: np.ndarray) -> np.ndarray:
        """This process's examples of a global batch: its block of B / process_count rows."""
        per = self.local_spec.batch_size
        return global_idx[self.process_index * per:(self.process_index + 1) * per]

    def build(self, global_idx: np.ndarray) -> Batch:
        """This process's part of the global batch `global_idx`."""
        local = self.local_indices(global_idx)
        return make_batch([self.examples[int(i)] for i in local], self.local_spec, self.time_origin)

    _build = build


@dataclasses.dataclass(frozen=True)
class ProcessRows:
    """This process's rows [lo, hi) of a global batch of `size` rows, built by this process alone.

    batch: a PaddedBatch whose leading axis holds the hi - lo rows (steps stacked after it, if any) and
    whose num_sequences is the global batch's (a scalar every process holds alike).
    """

    batch: PaddedBatch
    lo: int
    hi: int
    size: int


jax.tree_util.register_dataclass(ProcessRows, data_fields=["batch"], meta_fields=["lo", "hi", "size"])


class ProcessRowsStream(PreparedStream):
    """A PreparedStream of several processes whose batches are `ProcessRows`: this process's block of rows
    of every global batch, with the global batch's num_sequences, for `place_process_rows`."""

    def _build(self, global_idx: np.ndarray) -> ProcessRows:
        local = self.build(global_idx)
        local = dataclasses.replace(local, num_sequences=np.asarray(len(global_idx), np.int32))
        per = self.local_spec.batch_size
        return ProcessRows(local, self.process_index * per, (self.process_index + 1) * per, self.spec.batch_size)


def place_process_rows(rows: ProcessRows, mesh: jax.sharding.Mesh) -> PaddedBatch:
    """The global batch as jax Arrays on `mesh` from every process's `rows` (no process holds the others'):
    the leading axis split over ('data', 'fsdp') as `scaling_rec.parallel.sharding.place_batch` splits a
    global batch, num_sequences replicated. MeshError unless the mesh puts this process's rows on its
    devices (the batch axis split over the processes in process order)."""
    split = NamedSharding(mesh, PartitionSpec(DATA_PARALLEL_AXES))
    placed = {}
    for f in dataclasses.fields(rows.batch):
        x = np.asarray(getattr(rows.batch, f.name))
        if f.name == "num_sequences":
            placed[f.name] = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec()), x, x.shape)
            continue
        shape = (rows.size, *x.shape[1:])
        held = process_rows(split, shape)
        if held != (rows.lo, rows.hi):
            raise MeshError(f"process {jax.process_index()} of {jax.process_count()} streamed rows [{rows.lo}, "
                            f"{rows.hi}) of each batch of {rows.size}, but the mesh {dict(mesh.shape)} puts rows "
                            f"[{held[0]}, {held[1]}) on its devices: streamed training on several processes needs "
                            "the batch axis (mesh.data x mesh.fsdp) split over the processes, a multiple of their "
                            "number.")
        placed[f.name] = jax.make_array_from_process_local_data(split, x, shape)
    return dataclasses.replace(rows.batch, **placed)
