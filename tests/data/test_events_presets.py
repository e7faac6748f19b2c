"""The ML-20M, Amazon Reviews 2023 and Yambda presets on small fixtures in each source's own format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_rec.data import events, prepared


def _fixture(tmp_path, name: str):
    """A few rows laid out like the real file (header, types, extra columns), out of time order."""
    rng = np.random.default_rng(1)
    n = 60
    users, items, ts = rng.integers(1, 8, n), rng.integers(1, 15, n), rng.permutation(n) * 1000 + 10**9
    if name == "ml-20m":
        df = pd.DataFrame({"userId": users, "movieId": items * 10, "rating": rng.integers(1, 11, n) / 2.0,
                           "timestamp": ts})
        path = tmp_path / "ml-20m" / "ratings.csv"
        path.parent.mkdir()
        df.to_csv(path, index=False, float_format="%.1f")
    elif name == "amazon-2023":
        df = pd.DataFrame({"user_id": [f"AG{u:026d}" for u in users], "parent_asin": [f"B0{i:08d}" for i in items],
                           "rating": rng.integers(1, 6, n).astype(float), "timestamp": ts * 1000})
        path = tmp_path / "Toys_and_Games.csv"
        df.to_csv(path, index=False)
    else:
        df = pd.DataFrame({"uid": users.astype(np.uint32), "timestamp": ts.astype(np.uint32),
                           "item_id": items.astype(np.uint32), "is_organic": rng.integers(0, 2, n).astype(np.uint8),
                           "played_ratio_pct": rng.integers(0, 101, n).astype(np.uint16)})
        path = tmp_path / "likes.parquet"
        df.to_parquet(path)
    return path, df


@pytest.mark.parametrize("name", sorted(events.PRESETS))
def test_preset_reads_its_format_in_memory_and_prepared(tmp_path, name):
    preset = events.PRESETS[name]
    path, df = _fixture(tmp_path, name)
    assert path.name == pathlib_name(preset.file)
    data = events.load_events(path, preset.columns, timestamp_unit=preset.timestamp_unit)
    cols = preset.columns
    assert data.num_events == len(df) and data.num_users == df[cols.user].nunique()
    assert data.num_items == df[cols.item].nunique()
    for u in range(data.num_users):  # chronological within each user
        assert np.all(np.diff(data.user_timestamps(u)) >= 0)
    first_user = sorted(df[cols.user].unique())[0]
    rows = df[df[cols.user] == first_user].sort_values(cols.timestamp, kind="stable")
    item_ids = np.array(sorted(df[cols.item].unique()))
    np.testing.assert_array_equal(item_ids[data.user_items(0) - 1], rows[cols.item].to_numpy())
    seconds = rows[cols.timestamp].to_numpy() // events.per_second(preset.timestamp_unit)
    np.testing.assert_array_equal(data.user_timestamps(0), seconds)
    assert 10**9 <= data.timestamps.min() < 2 * 10**9, "Unix seconds, as the time bias buckets them"
    prepared.prepare(path, tmp_path / "out", cols, num_shards=2, write=lambda line: None,
                     timestamp_unit=preset.timestamp_unit)
    again = prepared.PreparedData.open(tmp_path / "out").to_sequences()
    np.testing.assert_array_equal(again.items, data.items)
    np.testing.assert_array_equal(again.timestamps, data.timestamps)
    if cols.action:
        actions = np.concatenate([np.load(p) for p in sorted((tmp_path / "out").glob("shard_*/actions.npy"))])
        assert actions.size == len(df) and set(actions.tolist()) <= {0, 1}


def pathlib_name(file: str) -> str:
    return file.rsplit("/", 1)[-1]
