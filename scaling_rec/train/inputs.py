"""From a config to the examples, batch geometry and FLOPs of one run."""

from __future__ import annotations

import dataclasses
import json

import ml_collections
import numpy as np

from scaling_rec.data.jagged import SequenceExample
from scaling_rec.data.known_answer import known_answer_sequences
from scaling_rec.data.long_range import long_range_sequences
from scaling_rec.data.pipeline import BatchSpec, auto_tokens_per_batch, nested_subset
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sequences import SequenceData
from scaling_rec.data.splits import leave_one_out
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.train.examples import eval_examples, time_origin, train_examples


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """Examples and static facts of one run.

    train/valid/test: SequenceExamples; num_items: V (ids 1..V); has_time: the data has timestamps;
    spec: the batch geometry; unique_train_examples: distinct training sequences (one per user).
    """

    data: SequenceData
    train: list[SequenceExample]
    valid: list[SequenceExample]
    test: list[SequenceExample]
    num_items: int
    has_time: bool
    time_origin: int
    spec: BatchSpec
    eval_spec: BatchSpec
    num_dropped_users: int


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
                          columns=d.columns.to_dict(), kcore=d.kcore)


def prepare(config: ml_collections.ConfigDict) -> RunInputs:
    """The run's examples and batch geometry; memoised on the keys that determine them, so that the
    runs of a sweep in one process (inline executor) load and split a dataset once."""
    keys = {"data": config.data.to_dict(), "seed": config.seed, "batch_size": config.train.batch_size,
            "eval_batch_size": config.eval.batch_size, "max_users": config.eval.max_users}
    key = json.dumps(keys, sort_keys=True)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _prepare(config)
    return _CACHE[key]


_CACHE: dict[str, RunInputs] = {}
_CACHE_SIZE = 4


def _prepare(config: ml_collections.ConfigDict) -> RunInputs:
    data = load_data(config)
    split = leave_one_out(data)
    max_len = config.data.max_len
    train = train_examples(split.train, max_len)
    if config.data.train_user_fraction < 1.0:  # data scaling: a nested subset of training users
        train = [train[i] for i in nested_subset(len(train), config.data.train_user_fraction)]
    valid = eval_examples(split.valid, max_len, config.eval.max_users)
    test = eval_examples(split.test, max_len, config.eval.max_users)
    lengths = np.array([len(e) for e in train])
    tokens = config.data.tokens_per_batch or auto_tokens_per_batch(lengths, config.train.batch_size, max_len)
    spec = BatchSpec(config.data.layout, config.train.batch_size, max_len, tokens)
    eval_lengths = np.array([len(e) for e in valid + test])
    eval_tokens = auto_tokens_per_batch(eval_lengths, config.eval.batch_size, max_len)
    eval_spec = BatchSpec(config.data.layout, config.eval.batch_size, max_len, eval_tokens)
    return RunInputs(
        data=data, train=train, valid=valid, test=test, num_items=data.num_items,
        has_time=data.timestamps is not None, time_origin=time_origin(data), spec=spec, eval_spec=eval_spec,
        num_dropped_users=split.num_dropped_users,
    )
