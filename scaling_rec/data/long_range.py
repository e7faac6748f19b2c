"""Seeded synthetic sequences with a planted long-range signal, for the long-sequence study.

Items 1..num_items are split at random into `num_clusters` equal-size clusters. Every user has a
hidden 'profile' cluster. A user's history is `seq_len` events, oldest first:

  * the last 2 events (the leave-one-out valid and test targets) are random items of the profile;
  * among the `signal_range` events before them, each event is a random profile item with
    probability `p_signal`, except the most recent `gap` ones; every other event is a uniformly
    random item (noise);
  * events further back than `signal_range` are pure noise.

So the profile, and with it the held-out targets, is revealed only by sparse events at least `gap`
events back: a model that sees the last W events has about p_signal × (min(W, signal_range) − gap)
profile events against ≈ W / num_clusters noise events per cluster, and the best guess (the
profile's items) gets easier to find as W grows up to `signal_range`, and no easier beyond it.
A perfect profile identifier reaches HR@10 = min(1, 10 / cluster size); chance is 10 / num_items.
Training targets are mostly noise (unpredictable); the profile events among them carry the signal.

With `personal=True` ('synthetic-long-personal') the profile is instead a private random set of
`num_items // num_clusters` items per user (long-term favourites that come back: repeat consumption),
not a cluster shared with other users. The statistics of the window are the same, but the model no
longer has to discover a latent item clustering from co-occurrence: it has to notice which items
recur in this user's own long history, which attention over the raw history can do directly.
"""

from __future__ import annotations

import numpy as np

from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError

NUM_TARGETS = 2  # profile events at the end of every history: the valid and test targets


def long_range_sequences(
    num_users: int = 256,
    num_items: int = 512,
    *,
    seq_len: int = 8200,
    num_clusters: int = 32,
    signal_range: int = 4000,
    gap: int = 50,
    p_signal: float = 0.02,
    with_timestamps: bool = True,
    personal: bool = False,
    seed: int = 0,
    name: str = "synthetic-long",
) -> SequenceData:
    """Generates a SequenceData of `num_users` histories of `seq_len` events (module docstring).

    Args:
      num_users, num_items: U sequences over item ids 1..num_items.
      seq_len: events per user (all users have the same length), >= NUM_TARGETS + 1.
      num_clusters: profile clusters; num_items must be divisible by it.
      signal_range: profile events lie within the last `signal_range` events before the targets.
      gap: the most recent `gap` events before the targets are noise only.
      p_signal: probability that an event inside the signal range (beyond the gap) is a profile item.
      with_timestamps: int64 Unix seconds, strictly increasing per user (gaps of 1 s + Exp(1 h)).
      personal: each user's profile is its own random set of num_items // num_clusters items
        (module docstring) instead of one of the shared clusters.
      seed: the same seed gives the same data.
    """
    if num_clusters < 1 or num_items % num_clusters:
        raise ConfigError(f"num_items={num_items} must be divisible by num_clusters={num_clusters}.")
    if num_users < 1 or seq_len < NUM_TARGETS + 1:
        raise ConfigError(f"need num_users >= 1 and seq_len >= {NUM_TARGETS + 1}; got {num_users}, {seq_len}.")
    if not 0 <= gap <= signal_range or not 0.0 <= p_signal <= 1.0:
        raise ConfigError(f"need 0 <= gap <= signal_range and p_signal in [0, 1]; got {gap}, {signal_range}, "
                          f"{p_signal}.")
    rng = np.random.default_rng(seed)
    size = num_items // num_clusters
    members = (rng.permutation(num_items).astype(np.int64) + 1).reshape(num_clusters, size)
    profile = rng.integers(num_clusters, size=num_users)

    items_UxL = rng.integers(1, num_items + 1, size=(num_users, seq_len))
    # distance of each position from the first target: seq_len - NUM_TARGETS - pos (1 = just before it)
    dist = seq_len - NUM_TARGETS - np.arange(seq_len)
    in_range = (dist > gap) & (dist <= signal_range)
    signal_UxL = (rng.random((num_users, seq_len)) < p_signal) & in_range[None, :]
    signal_UxL[:, seq_len - NUM_TARGETS:] = True
    if personal:  # extra draws only here: personal=False data stay as they were
        members = np.stack([rng.choice(num_items, size, replace=False) + 1 for _ in range(num_users)])
        profile = np.arange(num_users)
    profile_items = members[profile[:, None], rng.integers(size, size=(num_users, seq_len))]
    items_UxL = np.where(signal_UxL, profile_items, items_UxL)

    items = items_UxL.reshape(-1).astype(np.int32)
    offsets = np.arange(num_users + 1, dtype=np.int64) * seq_len
    timestamps = None
    if with_timestamps:
        gaps_UxL = 1 + rng.exponential(3600.0, size=(num_users, seq_len)).astype(np.int64)
        gaps_UxL[:, 0] = rng.integers(1_000_000_000, 1_100_000_000, size=num_users)
        timestamps = np.cumsum(gaps_UxL, axis=1).reshape(-1).astype(np.int64)
    source = (f"long_range(seed={seed}, seq_len={seq_len}, clusters={num_clusters}, signal_range={signal_range}, "
              f"gap={gap}, p_signal={p_signal}, personal={personal})")
    return SequenceData(
        name=name, num_items=num_items, num_users=num_users, items=items, timestamps=timestamps, ratings=None,
        user_offsets=offsets, source=source,
    ).validate()


def profile_of(data: SequenceData, num_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of every item id [num_items + 1], −1 for padding; the members table [C, size]) of the
    data generated with this seed — regenerates the permutation, for tests and analysis."""
    rng = np.random.default_rng(seed)
    size = data.num_items // num_clusters
    members = (rng.permutation(data.num_items).astype(np.int64) + 1).reshape(num_clusters, size)
    cluster_of = np.full(data.num_items + 1, -1, dtype=np.int64)
    for c in range(num_clusters):
        cluster_of[members[c]] = c
    return cluster_of, members
