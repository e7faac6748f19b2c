"""SequenceData checks, leave-one-out (CONTRACTS.md) and truncation to recent events."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest

from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sequences import SequenceData, from_user_lists
from scaling_rec.data.splits import leave_one_out, truncate_recent
from scaling_rec.errors import ConfigError, DataFormatError


@pytest.fixture
def small() -> SequenceData:
    seqs = [[1, 2, 3, 4, 5], [6, 7], [3, 2, 1], [4]]
    times = [[10, 20, 30, 40, 50], [1, 2], [5, 6, 7], [9]]
    return from_user_lists("small", seqs, num_items=8, timestamps=times)


def test_sequence_data_accessors(small: SequenceData) -> None:
    np.testing.assert_array_equal(small.lengths(), [5, 2, 3, 1])
    np.testing.assert_array_equal(small.user_items(2), [3, 2, 1])
    np.testing.assert_array_equal(small.user_timestamps(1), [1, 2])
    np.testing.assert_array_equal(small.user_of_event(), [0] * 5 + [1] * 2 + [2] * 3 + [3])
    with pytest.raises(IndexError):
        small.user_items(4)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"items": np.array([1, 2, 3, 4, 5, 6, 7, 3, 2, 1, 9], np.int32)}, "1..num_items"),
        ({"items": np.zeros(11, np.int64)}, "dtype"),
        ({"user_offsets": np.array([0, 5, 4, 10, 11], np.int64)}, "decrease"),
        ({"user_offsets": np.array([0, 5, 7, 10], np.int64)}, "shape"),
        ({"timestamps": np.array([10, 20, 30, 40, 50, 2, 1, 5, 6, 7, 9], np.int64)}, "chronological"),
        ({"ratings": np.ones(3, np.float32)}, "shape"),
    ],
)
def test_validate_rejects_broken_data(small: SequenceData, change: dict, what: str) -> None:
    with pytest.raises(DataFormatError, match=what):
        dataclasses.replace(small, **change).validate()


def test_leave_one_out_small(small: SequenceData) -> None:
    split = leave_one_out(small)
    assert (split.num_dropped_users, split.num_dropped_events) == (2, 3)
    np.testing.assert_array_equal(split.user_index, [0, 2])
    np.testing.assert_array_equal(split.train.items, [1, 2, 3, 3])
    np.testing.assert_array_equal(split.train.user_offsets, [0, 3, 4])
    assert split.valid.history is split.train
    np.testing.assert_array_equal(split.valid.targets, [4, 2])
    np.testing.assert_array_equal(split.valid.target_timestamps, [40, 6])
    np.testing.assert_array_equal(split.test.history.items, [1, 2, 3, 4, 3, 2])
    np.testing.assert_array_equal(split.test.history.timestamps, [10, 20, 30, 40, 5, 6])
    np.testing.assert_array_equal(split.test.targets, [5, 1])
    np.testing.assert_array_equal(split.test.target_timestamps, [50, 7])
    assert split.test.targets.dtype == np.int32 and split.test.num_users == 2
    for part in (split.train, split.test.history):
        part.validate()
        assert part.num_items == small.num_items


@pytest.mark.data
def test_leave_one_out_beauty_shapes(real_data_dir: pathlib.Path) -> None:
    data = load_sequences("amazon-beauty", real_data_dir, download=False)
    split = leave_one_out(data)
    u = 22_363
    assert split.num_dropped_users == 0 and split.train.num_users == u
    assert split.train.num_events == 198_502 - 2 * u
    assert split.test.history.num_events == 198_502 - u
    assert split.valid.targets.shape == split.test.targets.shape == (u,)
    assert split.test.target_timestamps is None
    np.testing.assert_array_equal(split.test.targets, data.items[data.user_offsets[1:] - 1])
    np.testing.assert_array_equal(split.valid.targets, data.items[data.user_offsets[1:] - 2])


def test_truncate_recent_keeps_last_events(small: SequenceData) -> None:
    short = truncate_recent(small, 2)
    np.testing.assert_array_equal(short.items, [4, 5, 6, 7, 2, 1, 4])
    np.testing.assert_array_equal(short.timestamps, [40, 50, 1, 2, 6, 7, 9])
    np.testing.assert_array_equal(short.lengths(), [2, 2, 2, 1])
    assert short.num_users == small.num_users and short.source == small.source
    assert truncate_recent(small, 5) is small
    with pytest.raises(ConfigError, match="max_len"):
        truncate_recent(small, 0)


def test_the_evaluated_users_are_a_fixed_uniform_sample_not_the_files_first():
    """The first users of a 5-core file are not a fair sample (Beauty's first 1,000 have 43% longer histories):
    eval.max_users takes a seeded sample, the same on every call, or the first ones on request."""
    from scaling_rec.data.splits import eval_user_indices

    pick = eval_user_indices(22_363, 5_000)
    assert np.array_equal(pick, eval_user_indices(22_363, 5_000)) and np.all(np.diff(pick) > 0)
    assert pick.size == 5_000 and pick.max() > 20_000 and abs(pick.mean() / 22_363 - 0.5) < 0.02
    assert np.array_equal(eval_user_indices(10, 3, "first"), [0, 1, 2])
    assert np.array_equal(eval_user_indices(10, 0), np.arange(10)) and np.array_equal(eval_user_indices(10, 20),
                                                                                       np.arange(10))
