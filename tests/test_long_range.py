"""The long-range synthetic generator: seeded, shaped as asked, and the planted signal is far back."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_rec.config import default_config
from scaling_rec.data.long_range import NUM_TARGETS, long_range_sequences, profile_of
from scaling_rec.errors import ConfigError
from scaling_rec.train.inputs import load_data

KW = dict(seq_len=1200, num_clusters=16, signal_range=1000, gap=50, p_signal=0.03)


def test_seeded_and_shapes():
    a = long_range_sequences(64, 128, seed=3, **KW)
    b = long_range_sequences(64, 128, seed=3, **KW)
    c = long_range_sequences(64, 128, seed=4, **KW)
    assert a.items.shape == (64 * 1200,) and a.items.dtype == np.int32
    np.testing.assert_array_equal(a.user_offsets, np.arange(65) * 1200)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(a.items, c.items)
    assert a.items.min() >= 1 and a.items.max() <= 128
    assert np.all(np.diff(a.timestamps.reshape(64, 1200), axis=1) > 0)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        long_range_sequences(4, 100, num_clusters=32)
    with pytest.raises(ConfigError):
        long_range_sequences(4, 128, seq_len=2)


def _hit_rate(data, window: int, cluster_of: np.ndarray, members: np.ndarray) -> float:
    """HR of a count predictor: guess the cluster most frequent among the last `window` events
    before the test target; hit when the target lies in it."""
    U, L = data.num_users, data.items.size // data.num_users
    items = data.items.reshape(U, L)
    hist = items[:, L - NUM_TARGETS - window:L - NUM_TARGETS]
    counts = np.stack([np.bincount(cluster_of[h], minlength=members.shape[0]) for h in hist])
    guess = counts.argmax(axis=1)
    return float(np.mean(cluster_of[items[:, -1]] == guess))


def test_signal_is_long_range():
    data = long_range_sequences(256, 128, seed=0, **KW)
    cluster_of, members = profile_of(data, 16, seed=0)
    items = data.items.reshape(256, 1200)
    # the two targets of a user share its profile cluster; the last `gap` events are pure noise
    np.testing.assert_array_equal(cluster_of[items[:, -1]], cluster_of[items[:, -2]])
    short, full = _hit_rate(data, 50, cluster_of, members), _hit_rate(data, 1000, cluster_of, members)
    assert short < 0.15  # chance is 1/16
    assert full > 0.8
    # beyond the signal range there is nothing more to find
    beyond = _hit_rate(data, 1198, cluster_of, members)
    assert beyond <= full + 0.05


def test_selected_by_config():
    c = default_config()
    c.data.name = "synthetic-long"
    c.data.synthetic_users, c.data.synthetic_items = 8, 64
    data = load_data(c)
    assert data.name == "synthetic-long" and data.num_users == 8 and data.num_items == 64


def test_personal_favourites_are_long_range_and_private():
    """personal=True with the study's settings (128 items, private sets of 4, 2% signal up to 4,000 events
    back): the top-10 most frequent items of the window hold the test target for ~20% of users with 200
    events of history, > 80% with 4,000 (chance 10/128). personal=False data are unchanged."""
    seq_len = 4100
    data = long_range_sequences(256, 128, seq_len=seq_len, seed=0, personal=True)
    items = data.items.reshape(256, seq_len)

    def top10_hit(window: int) -> float:
        hist = items[:, seq_len - NUM_TARGETS - window:seq_len - NUM_TARGETS]
        counts = np.stack([np.bincount(h, minlength=129) for h in hist])
        top = np.argsort(-counts, axis=1, kind="stable")[:, :10]
        return float(np.mean([items[u, -1] in top[u] for u in range(256)]))

    assert top10_hit(200) < 0.35 and top10_hit(4000) > 0.8
    shared = long_range_sequences(64, 128, seed=3, **KW)
    np.testing.assert_array_equal(shared.items, long_range_sequences(64, 128, seed=3, personal=False, **KW).items)


def test_personal_variant_selected_by_config():
    c = default_config()
    c.data.name = "synthetic-long-personal"
    c.data.synthetic_users, c.data.synthetic_items = 8, 64
    data = load_data(c)
    assert data.name == "synthetic-long-personal" and "personal=True" in data.source


def test_gap_and_signal_strength_selected_by_config():
    """data.long_gap / data.long_p_signal reach the generator (recorded in its source string); the
    defaults reproduce the data of configs that predate the keys."""
    c = default_config()
    c.data.name = "synthetic-long-personal"
    c.data.synthetic_users, c.data.synthetic_items = 8, 64
    before = load_data(c)
    assert "gap=50, p_signal=0.02" in before.source
    c.data.long_gap, c.data.long_p_signal = 300, 0.1
    after = load_data(c)
    assert "gap=300, p_signal=0.1" in after.source
    np.testing.assert_array_equal(before.items, long_range_sequences(8, 64, seed=0, personal=True,
                                                                     name="synthetic-long-personal").items)
