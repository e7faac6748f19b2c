"""The synthetic generator: seeded, valid, with a structure a model can learn."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.errors import ConfigError


def test_seeded_and_valid() -> None:
    a = synthetic_sequences(100, 50, seed=4, with_timestamps=True, with_ratings=True)
    b = synthetic_sequences(100, 50, seed=4, with_timestamps=True, with_ratings=True)
    c = synthetic_sequences(100, 50, seed=5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.items.shape != c.items.shape or np.any(a.items != c.items)
    assert a.num_users == 100 and a.num_items == 50 and a.lengths().min() >= 3
    assert a.items.min() >= 1 and a.items.max() <= 50
    same_user = np.diff(a.user_of_event()) == 0
    assert np.all(np.diff(a.timestamps)[same_user] > 0)  # strictly increasing per user
    assert set(np.unique(a.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert c.timestamps is None and c.ratings is None


def test_next_item_is_learnable() -> None:
    """A bigram table fitted on half the users predicts the other half far above chance."""
    data = synthetic_sequences(400, 100, seed=0, p_stay=0.9, p_follow=0.8, mean_len=15)
    user_E = data.user_of_event()
    same = user_E[1:] == user_E[:-1]
    prev, nxt, user = data.items[:-1][same], data.items[1:][same], user_E[:-1][same]
    fit, held = user < 200, user >= 200
    counts = np.zeros((101, 101), np.int64)
    np.add.at(counts, (prev[fit], nxt[fit]), 1)
    accuracy = np.mean(counts.argmax(axis=1)[prev[held]] == nxt[held])
    assert accuracy > 0.6  # about p_stay * p_follow = 0.72; chance is 0.01


@pytest.mark.parametrize(
    "kwargs", [{"num_clusters": 0}, {"num_clusters": 200}, {"mean_len": 1.0}, {"p_stay": 1.5}]
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        synthetic_sequences(10, 100, **kwargs)
