"""From a config to the examples, batch geometry and FLOPs of one run.

Built-in and generated datasets, and event-log files, are read into memory and split there. A
directory made by launch/prepare.py (data.name='events', data.path=that directory) is streamed: its
training, validation and test examples are sequences that read each user's events from the shards when
a batch is built (scaling_rec/data/stream.py), with the same examples, batches and metrics as the
in-memory path over the same log, and resident memory O(users), not O(events). With several processes
and the padded layout, each process builds and reads only its rows of every training batch
(scaling_rec.data.stream.ProcessRowsStream); the jagged layout builds the whole batch on every process.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from scaling_rec.data.jagged import SequenceExample
from scaling_rec.data.known_answer import known_answer_sequences
from scaling_rec.data.long_range import long_range_sequences
from scaling_rec.data.pipeline import BatchSpec, TrainStream, auto_tokens_per_batch, example_lengths, nested_subset
from scaling_rec.data.prepared import PreparedData, check_seconds, source_info
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sequences import SequenceData
from scaling_rec.data.splits import MIN_EVENTS, leave_one_out
from scaling_rec.data.stream import PreparedEvalExamples, PreparedExamples, PreparedStream, ProcessRowsStream
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.errors import ConfigError
from scaling_rec.train.examples import eval_examples, time_origin, train_examples


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """Examples and static facts of one run.

    train/valid/test: sequences of SequenceExamples (lists in memory; built on demand from a prepared
    directory); num_items: V (ids 1..V); has_time: the data has timestamps; spec: the batch geometry;
    train_flop_keys: int64 [N, 2], each training example's (length, targets), what its FLOPs depend on.
    """

    data: SequenceData | PreparedData
    train: Sequence[SequenceExample]
    valid: Sequence[SequenceExample]
    test: Sequence[SequenceExample]
    num_items: int
    has_time: bool
    time_origin: int
    spec: BatchSpec
    eval_spec: BatchSpec
    num_dropped_users: int
    train_flop_keys: np.ndarray

    def train_stream(self, seed: int) -> TrainStream:
        """The run's endless, resumable training batches (a global step names one batch); over a prepared
        directory on several processes with the padded layout, this process's rows of each (module docstring)."""
        if isinstance(self.train, PreparedExamples):
            count = jax.process_count()
            if count > 1 and self.spec.layout == "padded":
                return ProcessRowsStream(self.train, self.spec, seed=seed, time_origin=self.time_origin,
                                         process_index=jax.process_index(), process_count=count)
            return PreparedStream(self.train, self.spec, seed=seed, time_origin=self.time_origin)
        return TrainStream(self.train, self.spec, seed=seed, time_origin=self.time_origin)


def load_data(config: ml_collections.ConfigDict) -> SequenceData:
    d = config.data
    if d.name == "synthetic":
        return synthetic_sequences(d.synthetic_users, d.synthetic_items, with_timestamps=True, seed=config.seed)
    if d.name == "known-answer":
        return known_answer_sequences(d.synthetic_users, d.synthetic_items, seed=config.seed)
    if d.name in ("synthetic-long", "synthetic-long-personal"):
        return long_range_sequences(d.synthetic_users, d.synthetic_items, seed=config.seed, gap=d.long_gap,
                                    p_signal=d.long_p_signal, personal=d.name.endswith("personal"), name=d.name)
    return load_sequences(d.name, d.data_dir or None, min_rating=d.min_rating or None, dedup=d.dedup, log_path=d.path,
                          columns=d.columns.to_dict(), kcore=d.kcore, timestamp_unit=d.timestamp_unit)


def prepare(config: ml_collections.ConfigDict) -> RunInputs:
    """The run's examples and batch geometry; memoised on the keys that determine them, so that the
    runs of a sweep in one process (inline executor) load and split a dataset once. The keys include the
    size and change times of data.path (a log, or a prepared directory's manifest): a log edited between two
    runs of one process is read again, not served from the memo."""
    keys = {"data": config.data.to_dict(), "seed": config.seed, "batch_size": config.train.batch_size,
            "eval_batch_size": config.eval.batch_size, "max_users": config.eval.max_users,
            "eval_users": config.eval.users,
            "source": _file_identity(config.data.get("path", ""))}
    key = json.dumps(keys, sort_keys=True)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _prepare(config)
    return _CACHE[key]


def _file_identity(path: str) -> dict | None:
    """prepared.source_info of `path` (of its manifest.json for a directory); None without one."""
    p = pathlib.Path(path) if path else None
    p = p / "manifest.json" if p is not None and p.is_dir() else p
    return source_info(p) if p is not None and p.is_file() else None


_CACHE: dict[str, RunInputs] = {}
_CACHE_SIZE = 4


def streamed(config: ml_collections.ConfigDict) -> bool:
    """Whether the run streams its data: data.name='events' with data.path a prepared directory."""
    return config.data.name == "events" and bool(config.data.path) and pathlib.Path(config.data.path).is_dir()


def _specs(config: ml_collections.ConfigDict, train_lengths: np.ndarray,
           eval_lengths: np.ndarray) -> tuple[BatchSpec, BatchSpec]:
    max_len = config.data.max_len
    tokens = config.data.tokens_per_batch or auto_tokens_per_batch(train_lengths, config.train.batch_size, max_len)
    eval_tokens = auto_tokens_per_batch(eval_lengths, config.eval.batch_size, max_len)
    return (BatchSpec(config.data.layout, config.train.batch_size, max_len, tokens),
            BatchSpec(config.data.layout, config.eval.batch_size, max_len, eval_tokens))


def _vocabulary(config: ml_collections.ConfigDict, data_items: int) -> int:
    """The model's item count: config data.num_items, or the data's when that is 0."""
    wanted = config.data.num_items
    if wanted and wanted < data_items:
        raise ConfigError(f"data.num_items={wanted} is below the {data_items:,} items of the data "
                          f"({config.data.name}); set it to 0 (the data's) or at least {data_items}.")
    return wanted or data_items


def _prepare_streamed(config: ml_collections.ConfigDict) -> RunInputs:
    """A prepared directory's examples, read from its shards when a batch is built (module docstring)."""
    d = config.data
    refused = [k for k in ("min_rating", "dedup", "kcore") if d[k]]
    if refused:
        raise ConfigError(f"data.{refused[0]}={d[refused[0]]} filters the whole log in memory; a prepared "
                          f"directory ({d.path}) is streamed as it was prepared. Set data.path to the log file "
                          "itself, or filter the log before preparing it (launch.prepare --kcore).")
    data = PreparedData.open(d.path)
    check_seconds(d.timestamp_unit, d.path)
    train = PreparedExamples(data, d.max_len, d.train_user_fraction)
    valid = PreparedEvalExamples(data, d.max_len, "valid", config.eval.max_users, config.eval.users)
    test = PreparedEvalExamples(data, d.max_len, "test", config.eval.max_users, config.eval.users)
    spec, eval_spec = _specs(config, train.lengths, np.concatenate([valid.lengths, test.lengths]))
    return RunInputs(
        data=data, train=train, valid=valid, test=test, num_items=_vocabulary(config, data.num_items),
        has_time=data.has_time,
        time_origin=data.time_origin, spec=spec, eval_spec=eval_spec,
        num_dropped_users=int(np.count_nonzero(data.lengths < MIN_EVENTS)),
        train_flop_keys=np.stack([train.lengths, train.lengths], axis=1),  # every position has a target
    )


def _prepare(config: ml_collections.ConfigDict) -> RunInputs:
    if streamed(config):
        return _prepare_streamed(config)
    data = load_data(config)
    split = leave_one_out(data)
    max_len = config.data.max_len
    train = train_examples(split.train, max_len)
    if config.data.train_user_fraction < 1.0:  # data scaling: a nested subset of training users
        train = [train[i] for i in nested_subset(len(train), config.data.train_user_fraction)]
    valid = eval_examples(split.valid, max_len, config.eval.max_users, config.eval.users)
    test = eval_examples(split.test, max_len, config.eval.max_users, config.eval.users)
    lengths = example_lengths(train)
    spec, eval_spec = _specs(config, lengths, example_lengths(valid + test))
    targets = np.array([np.count_nonzero(e.targets) for e in train], np.int64)
    return RunInputs(
        data=data, train=train, valid=valid, test=test, num_items=_vocabulary(config, data.num_items),
        has_time=data.timestamps is not None, time_origin=time_origin(data), spec=spec, eval_spec=eval_spec,
        num_dropped_users=split.num_dropped_users, train_flop_keys=np.stack([lengths, targets], axis=1),
    )
