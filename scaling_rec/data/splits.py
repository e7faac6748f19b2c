"""Leave-one-out splits of sequence data, and truncation to the most recent events.

Leave-one-out (docs/CONTRACTS.md; SASRec, Kang & McAuley 2018, section IV-A): for a user with
n >= 3 events, train = events[:n-2]; validation target = events[n-2] with history events[:n-2];
test target = events[n-1] with history events[:n-1]. Users with fewer events are dropped and
counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling_rec.config import EVAL_USER_PICKS
from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError, DataFormatError

MIN_EVENTS = 3


@dataclasses.dataclass(frozen=True, eq=False)
class EvalSplit:
    """Histories and their next-item targets (one per kept user) for validation or test.

    Attributes:
      history: SequenceData of the U kept users' histories (oldest first), same item ids.
      targets: int32 [U], the item to predict after each history.
      target_timestamps: int64 [U] seconds, or None when the data has no timestamps.
      user_index: int64 [U], each user's index in the SequenceData that was split.
    """

    history: SequenceData
    targets: np.ndarray
    target_timestamps: np.ndarray | None
    user_index: np.ndarray

    @property
    def num_users(self) -> int:
        """U, the number of (history, target) pairs."""
        return int(self.targets.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class LeaveOneOutSplit:
    """Train sequences plus validation and test targets of the same kept users.

    Attributes:
      train: SequenceData, events[:n-2] of each kept user (U users, user i = user_index[i]).
      valid: targets events[n-2]; its history is the train sequences (the same object).
      test: targets events[n-1] with histories events[:n-1].
      user_index: int64 [U], indices of the kept users in the SequenceData that was split.
      num_dropped_users: users with fewer than 3 events.
      num_dropped_events: the events of those users.
    """

    train: SequenceData
    valid: EvalSplit
    test: EvalSplit
    user_index: np.ndarray
    num_dropped_users: int
    num_dropped_events: int


def _range_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) over (s, n) pairs: int64 [sum(lengths)]."""
    total = int(lengths.sum())
    new_starts = np.cumsum(lengths) - lengths
    return np.repeat(starts - new_starts, lengths) + np.arange(total, dtype=np.int64)


def _take_spans(data: SequenceData, starts: np.ndarray, lengths: np.ndarray, tag: str) -> SequenceData:
    """A SequenceData whose user i holds events starts[i] : starts[i] + lengths[i] of `data`."""
    idx = _range_indices(starts.astype(np.int64), lengths.astype(np.int64))
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return SequenceData(
        name=data.name,
        num_items=data.num_items,
        num_users=int(lengths.size),
        items=data.items[idx],
        timestamps=None if data.timestamps is None else data.timestamps[idx],
        ratings=None if data.ratings is None else data.ratings[idx],
        user_offsets=offsets,
        source=f"{data.source} [{tag}]",
    )


def leave_one_out(data: SequenceData) -> LeaveOneOutSplit:
    """Splits every user with >= 3 events into train / validation / test (module docstring).

    Raises:
      DataFormatError: no user has 3 events (nothing to train and evaluate on), with the counts read.
    """
    lengths = data.lengths()
    keep = lengths >= MIN_EVENTS
    if not keep.any():
        raise DataFormatError(
            f"{data.source}: no user has the {MIN_EVENTS} events leave-one-out needs (train, validation target, "
            f"test target): read {data.num_users:,} users with {data.num_events:,} events, at most "
            f"{int(lengths.max()) if lengths.size else 0} per user. Use data with longer histories (check "
            "data.min_rating and data.dedup, which drop events)."
        )
    user_index = np.flatnonzero(keep).astype(np.int64)
    starts, n = data.user_offsets[:-1][keep], lengths[keep]
    ends = starts + n
    train = _take_spans(data, starts, n - 2, "leave-one-out train")
    test_history = _take_spans(data, starts, n - 1, "leave-one-out test history")

    def _split(history: SequenceData, target_pos: np.ndarray) -> EvalSplit:
        return EvalSplit(
            history=history,
            targets=data.items[target_pos],
            target_timestamps=None if data.timestamps is None else data.timestamps[target_pos],
            user_index=user_index,
        )

    return LeaveOneOutSplit(
        train=train,
        valid=_split(train, ends - 2),
        test=_split(test_history, ends - 1),
        user_index=user_index,
        num_dropped_users=int((~keep).sum()),
        num_dropped_events=int(lengths[~keep].sum()),
    )


def truncate_recent(data: SequenceData, max_len: int) -> SequenceData:
    """Keeps each user's `max_len` most recent events (users keep their order and index)."""
    if max_len < 1:
        raise ConfigError(f"truncate_recent: max_len must be >= 1, got {max_len}.")
    lengths = data.lengths()
    if lengths.size == 0 or lengths.max() <= max_len:
        return data
    kept = np.minimum(lengths, max_len)
    starts = data.user_offsets[1:] - kept
    return dataclasses.replace(_take_spans(data, starts, kept, f"last {max_len}"), source=data.source)


_SAMPLE_SEED = 20231207


def eval_user_indices(n: int, max_users: int, pick: str = "sample") -> np.ndarray:
    """Sorted positions of the evaluated users among the `n` a split holds (config eval.max_users, eval.users).

    All of them when max_users <= 0 or >= n. Else 'sample': a seeded uniform sample of max_users, the same
    for validation and test and for every run and seed, so that runs are scored on one set of users; or
    'first': the first max_users. The first users of a file are not a fair sample: on Beauty's 5-core file
    the first 1,000 have histories 43% longer than the average user, and the popularity baseline's test
    HR@10 on them is .0015 against .0113 on all users.
    """
    if pick not in EVAL_USER_PICKS:
        raise ValueError(f"eval.users={pick!r}; use one of {EVAL_USER_PICKS}")
    if max_users <= 0 or max_users >= n:
        return np.arange(n)
    if pick == "first":
        return np.arange(max_users)
    return np.sort(np.random.default_rng(_SAMPLE_SEED).choice(n, max_users, replace=False))
