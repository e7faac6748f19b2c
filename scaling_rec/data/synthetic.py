"""Seeded synthetic sequences with a learnable structure, for tests and smoke runs.

Items 1..num_items are split at random into `num_clusters` clusters; inside a cluster the items form
a cycle (each item has one successor). A user starts at a random item; at each step the user stays
in the current cluster with probability `p_stay` (then moves to the successor of the last item with
probability `p_follow`, else to a random item of the cluster), or jumps to a random item of a random
cluster. So the best next-item guess, the successor, is right about p_stay * p_follow of the time,
against 1 / num_items by chance.
"""

from __future__ import annotations

import numpy as np

from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError


def synthetic_sequences(
    num_users: int = 200,
    num_items: int = 100,
    *,
    num_clusters: int = 10,
    mean_len: float = 12.0,
    min_len: int = 3,
    p_stay: float = 0.9,
    p_follow: float = 0.8,
    with_timestamps: bool = False,
    with_ratings: bool = False,
    seed: int = 0,
    name: str = "synthetic",
) -> SequenceData:
    """Generates a SequenceData (see the module docstring for the generating process).

    Args:
      num_users, num_items: U sequences over item ids 1..num_items.
      num_clusters: clusters of items (each at least one item).
      mean_len: mean events per user; lengths are min_len + Poisson(mean_len - min_len).
      p_stay, p_follow: transition probabilities (module docstring).
      with_timestamps: int64 Unix seconds, strictly increasing per user (gaps of 1 s + Exp(1 h)).
      with_ratings: float32 whole-star ratings 1..5 (per-item quality plus noise).
      seed: the same seed gives the same data.
    """
    if not 1 <= num_clusters <= num_items:
        raise ConfigError(f"num_clusters must lie in 1..num_items={num_items}, got {num_clusters}.")
    if num_users < 1 or min_len < 1 or mean_len < min_len:
        raise ConfigError(
            f"need num_users >= 1, min_len >= 1 and mean_len >= min_len; got num_users={num_users}, "
            f"min_len={min_len}, mean_len={mean_len}."
        )
    if not (0.0 <= p_stay <= 1.0 and 0.0 <= p_follow <= 1.0):
        raise ConfigError(f"p_stay and p_follow are probabilities; got {p_stay}, {p_follow}.")
    rng = np.random.default_rng(seed)

    members = rng.permutation(num_items).astype(np.int64) + 1  # cluster c = members[start[c]:+size[c]]
    sizes = np.full(num_clusters, num_items // num_clusters, dtype=np.int64)
    sizes[: num_items % num_clusters] += 1
    cluster_start = np.cumsum(sizes) - sizes
    cluster_of = np.empty(num_items + 1, dtype=np.int64)
    successor = np.empty(num_items + 1, dtype=np.int64)
    for c in range(num_clusters):
        ring = members[cluster_start[c] : cluster_start[c] + sizes[c]]
        cluster_of[ring] = c
        successor[ring] = np.roll(ring, -1)

    def random_item_in(clusters: np.ndarray) -> np.ndarray:
        pick = np.floor(rng.random(clusters.size) * sizes[clusters]).astype(np.int64)
        return members[cluster_start[clusters] + pick]

    lengths = min_len + rng.poisson(mean_len - min_len, size=num_users).astype(np.int64)
    max_len = int(lengths.max())
    items_UxL = np.zeros((num_users, max_len), dtype=np.int64)
    items_UxL[:, 0] = random_item_in(rng.integers(num_clusters, size=num_users))
    for t in range(1, max_len):
        prev = items_UxL[:, t - 1]
        stay = rng.random(num_users) < p_stay
        follow = rng.random(num_users) < p_follow
        cluster = np.where(stay, cluster_of[prev], rng.integers(num_clusters, size=num_users))
        items_UxL[:, t] = np.where(stay & follow, successor[prev], random_item_in(cluster))

    valid_UxL = np.arange(max_len)[None, :] < lengths[:, None]
    items = items_UxL[valid_UxL].astype(np.int32)
    offsets = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    timestamps = None
    if with_timestamps:
        gaps_UxL = 1 + rng.exponential(3600.0, size=(num_users, max_len)).astype(np.int64)
        gaps_UxL[:, 0] = rng.integers(1_000_000_000, 1_100_000_000, size=num_users)
        timestamps = np.cumsum(gaps_UxL, axis=1)[valid_UxL].astype(np.int64)
    ratings = None
    if with_ratings:
        quality = rng.uniform(1.5, 4.5, size=num_items + 1)
        noisy = quality[items] + rng.normal(0.0, 1.0, size=items.size)
        ratings = np.clip(np.round(noisy), 1, 5).astype(np.float32)

    source = (
        f"synthetic(seed={seed}, clusters={num_clusters}, p_stay={p_stay}, p_follow={p_follow})"
    )
    return SequenceData(
        name=name,
        num_items=num_items,
        num_users=num_users,
        items=items,
        timestamps=timestamps,
        ratings=ratings,
        user_offsets=offsets,
        source=source,
    ).validate()
