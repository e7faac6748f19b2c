"""`SequenceData`: every user's chronological item sequence, packed user after user.

The layout (docs/CONTRACTS.md, "Sequence data"): all E events in one array, user u's events at
`items[user_offsets[u]:user_offsets[u + 1]]`, oldest first. Item ids are 1..num_items; 0 is
reserved for padding and never appears in `items`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import chex
import numpy as np

from scaling_rec.errors import DataFormatError


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceData:
    """Per-user chronological event sequences of one dataset.

    Attributes:
      name: dataset name, e.g. 'amazon-beauty'.
      num_items: item ids run over 1..num_items; 0 is padding.
      num_users: U, the number of sequences.
      items: int32 [E], all events, user after user, each user's events oldest first.
      timestamps: int64 [E] event times in seconds (Unix time), or None when the source has none
        (the Amazon S3-Rec form).
      ratings: float32 [E] explicit ratings, or None.
      user_offsets: int64 [U+1], user u's events are `items[user_offsets[u]:user_offsets[u+1]]`.
      source: where the events came from (a file path or 'synthetic(...)').
    """

    name: str
    num_items: int
    num_users: int
    items: np.ndarray
    timestamps: np.ndarray | None
    ratings: np.ndarray | None
    user_offsets: np.ndarray
    source: str

    @property
    def num_events(self) -> int:
        """E, the total number of events."""
        return int(self.items.shape[0])

    def lengths(self) -> np.ndarray:
        """Events per user: int64 [U]."""
        return np.diff(self.user_offsets)

    def user_items(self, u: int) -> np.ndarray:
        """User u's items, oldest first: int32 [n_u] (a view, not a copy)."""
        if not 0 <= u < self.num_users:
            raise IndexError(f"user index {u} out of range 0..{self.num_users - 1} in {self.name!r}")
        return self.items[self.user_offsets[u] : self.user_offsets[u + 1]]

    def user_timestamps(self, u: int) -> np.ndarray | None:
        """User u's event times in seconds: int64 [n_u], or None when the data has none."""
        if self.timestamps is None:
            return None
        self.user_items(u)  # range check
        return self.timestamps[self.user_offsets[u] : self.user_offsets[u + 1]]

    def user_of_event(self) -> np.ndarray:
        """The user index of every event: int64 [E]."""
        return np.repeat(np.arange(self.num_users, dtype=np.int64), self.lengths())

    def validate(self) -> SequenceData:
        """Checks dtypes, shapes, offsets, id ranges and chronological order; returns self.

        Raises:
          DataFormatError: naming the field that breaks the contract and the dataset's source.
        """
        where = f"SequenceData {self.name!r} (source {self.source})"
        try:
            chex.assert_rank(self.items, 1)
            chex.assert_type(self.items, np.int32)
            chex.assert_shape(self.user_offsets, (self.num_users + 1,))
            chex.assert_type(self.user_offsets, np.int64)
            if self.timestamps is not None:
                chex.assert_shape(self.timestamps, self.items.shape)
                chex.assert_type(self.timestamps, np.int64)
            if self.ratings is not None:
                chex.assert_shape(self.ratings, self.items.shape)
                chex.assert_type(self.ratings, np.float32)
        except AssertionError as e:
            raise DataFormatError(
                f"{where}: array shape/dtype breaks docs/CONTRACTS.md: {e}. Build it with "
                "scaling_rec.data.sequences.from_user_lists or a reader of scaling_rec.data."
            ) from e
        offsets = self.user_offsets
        if offsets[0] != 0 or offsets[-1] != self.num_events:
            raise DataFormatError(
                f"{where}: user_offsets must start at 0 and end at E={self.num_events}, "
                f"got {offsets[0]}..{offsets[-1]}."
            )
        if np.any(np.diff(offsets) < 0):
            bad = int(np.argmax(np.diff(offsets) < 0))
            raise DataFormatError(f"{where}: user_offsets decrease at user {bad}; they must be cumulative.")
        if self.num_events and (self.items.min() < 1 or self.items.max() > self.num_items):
            raise DataFormatError(
                f"{where}: item ids must lie in 1..num_items={self.num_items} (0 is padding), "
                f"got {self.items.min()}..{self.items.max()}."
            )
        if self.timestamps is not None and self.num_events > 1:
            same_user = np.diff(self.user_of_event()) == 0
            backwards = same_user & (np.diff(self.timestamps) < 0)
            if np.any(backwards):
                e = int(np.argmax(backwards))
                u = int(self.user_of_event()[e])
                raise DataFormatError(
                    f"{where}: user {u}'s events are not chronological (event {e + 1} at "
                    f"{self.timestamps[e + 1]} s follows {self.timestamps[e]} s); sort each user by time."
                )
        return self


def from_user_lists(
    name: str,
    sequences: Sequence[Sequence[int]],
    *,
    num_items: int | None = None,
    timestamps: Sequence[Sequence[int]] | None = None,
    ratings: Sequence[Sequence[float]] | None = None,
    source: str = "in-memory",
) -> SequenceData:
    """Packs per-user lists (oldest first) into a validated SequenceData.

    Args:
      sequences: U lists of item ids in 1..num_items.
      num_items: defaults to the largest id present.
      timestamps, ratings: U lists parallel to `sequences` (seconds; rating values), or None.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def _flat(lists: Sequence[Sequence[float]] | None, dtype: type) -> np.ndarray | None:
        if lists is None:
            return None
        return np.asarray([x for s in lists for x in s], dtype=dtype).reshape(-1)

    items = _flat(sequences, np.int32)
    assert items is not None
    if num_items is None:
        num_items = int(items.max()) if items.size else 0
    return SequenceData(
        name=name,
        num_items=int(num_items),
        num_users=len(sequences),
        items=items,
        timestamps=_flat(timestamps, np.int64),
        ratings=_flat(ratings, np.float32),
        user_offsets=offsets,
        source=source,
    ).validate()


def select_events(data: SequenceData, keep_E: np.ndarray) -> SequenceData:
    """Keeps the events where `keep_E` (bool [E]) is True; users and item ids stay as they are.

    A user may end with zero events; use `drop_empty_users` afterwards if that is unwanted.
    """
    user_E = data.user_of_event()
    kept_per_user = np.bincount(user_E[keep_E], minlength=data.num_users).astype(np.int64)
    offsets = np.zeros(data.num_users + 1, dtype=np.int64)
    np.cumsum(kept_per_user, out=offsets[1:])
    return dataclasses.replace(
        data,
        items=data.items[keep_E],
        timestamps=None if data.timestamps is None else data.timestamps[keep_E],
        ratings=None if data.ratings is None else data.ratings[keep_E],
        user_offsets=offsets,
    )


def drop_consecutive_repeats(data: SequenceData) -> SequenceData:
    """Drops an event when it repeats the item of the same user's previous event (keeps the first).

    Every item keeps at least one event, so num_items and the ids are unchanged.
    """
    if data.num_events < 2:
        return data
    keep_E = np.ones(data.num_events, dtype=bool)
    user_E = data.user_of_event()
    keep_E[1:] = (data.items[1:] != data.items[:-1]) | (user_E[1:] != user_E[:-1])
    return select_events(data, keep_E)
