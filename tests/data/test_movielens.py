"""MovieLens readers: real ML-100K counts, sort and remap rules, options, ML-1M round trip, errors."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from scaling_rec.data.movielens import (
    read_ml1m_ratings,
    read_ml100k_udata,
    read_ml_ratings_csv,
    write_ml1m_ratings_dat,
)
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.errors import ConfigError, DataFormatError


@pytest.fixture(scope="module")
def ml100k(real_data_dir: pathlib.Path):
    return load_sequences("ml-100k", real_data_dir, download=False)


@pytest.mark.data
def test_ml100k_counts_and_ratings(ml100k) -> None:
    assert (ml100k.num_users, ml100k.num_items, ml100k.num_events) == (943, 1682, 100_000)
    values, counts = np.unique(ml100k.ratings, return_counts=True)
    np.testing.assert_array_equal(values, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(counts, [6110, 11370, 27145, 34174, 21201])


@pytest.mark.data
def test_ml100k_chronological_with_identity_ids(ml100k) -> None:
    same_user = np.diff(ml100k.user_of_event()) == 0
    assert np.all(np.diff(ml100k.timestamps)[same_user] >= 0)
    # Ids 1..943 / 1..1682 are all present, so the ascending-id remap is the identity:
    # the first line of u.data, "196 242 3 881250949", is an event of user index 195, item 242.
    u = 195
    hit = (ml100k.user_items(u) == 242) & (ml100k.user_timestamps(u) == 881250949)
    assert hit.sum() == 1
    assert ml100k.ratings[ml100k.user_offsets[u] + np.flatnonzero(hit)[0]] == 3


@pytest.mark.data
def test_ml100k_min_rating(real_data_dir: pathlib.Path) -> None:
    data = load_sequences("ml-100k", real_data_dir, min_rating=4, download=False)
    assert data.num_events == 34174 + 21201
    assert data.ratings.min() == 4
    assert data.num_items == np.unique(data.items).size  # remapped densely after the filter


def _write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_stable_sort_and_ascending_id_remap(tmp_path: pathlib.Path) -> None:
    # user 7: ts 5 (item 900), ts 5 (item 30, later line), ts 1 (item 500); user 3: one event.
    path = _write(tmp_path, "u.data", "7\t900\t4\t5\n3\t30\t2\t9\n7\t30\t5\t5\n7\t500\t1\t1\n")
    data = read_ml100k_udata(path)
    # users by ascending id: 3 -> 0, 7 -> 1; items by ascending id: 30 -> 1, 500 -> 2, 900 -> 3.
    np.testing.assert_array_equal(data.user_offsets, [0, 1, 4])
    np.testing.assert_array_equal(data.items, [1, 2, 3, 1])
    np.testing.assert_array_equal(data.timestamps, [9, 1, 5, 5])
    np.testing.assert_array_equal(data.ratings, [2, 1, 4, 5])


def test_dedup_consecutive(tmp_path: pathlib.Path) -> None:
    text = "1\t10\t5\t1\n1\t10\t4\t2\n1\t20\t4\t3\n1\t10\t4\t4\n2\t10\t4\t1\n"
    path = _write(tmp_path, "u.data", text)
    np.testing.assert_array_equal(read_ml100k_udata(path).items, [1, 1, 2, 1, 1])
    dedup = read_ml100k_udata(path, dedup=True)
    np.testing.assert_array_equal(dedup.items, [1, 2, 1, 1])
    np.testing.assert_array_equal(dedup.timestamps, [1, 3, 4, 1])  # the first of a run is kept


def test_min_rating_that_keeps_nothing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="min_rating"):
        read_ml100k_udata(_write(tmp_path, "u.data", "1\t2\t3\t4\n"), min_rating=5)


def test_ml1m_round_trip_through_writer(tmp_path: pathlib.Path) -> None:
    synth = synthetic_sequences(80, 60, with_timestamps=True, with_ratings=True, seed=1)
    path = tmp_path / "ratings.dat"
    write_ml1m_ratings_dat(path, synth, shuffle_seed=7)
    first = path.read_text().splitlines()[0].split("::")
    assert len(first) == 4 and all(f.isdigit() for f in first)
    data = read_ml1m_ratings(path)
    raw_ids = np.unique(synth.items)  # item k of the reader is the k-th smallest id written
    np.testing.assert_array_equal(raw_ids[data.items - 1], synth.items)
    np.testing.assert_array_equal(data.user_offsets, synth.user_offsets)
    np.testing.assert_array_equal(data.timestamps, synth.timestamps)
    np.testing.assert_array_equal(data.ratings, synth.ratings)


def test_writer_needs_timestamps_and_ratings(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataFormatError, match="timestamps"):
        write_ml1m_ratings_dat(tmp_path / "r.dat", synthetic_sequences(5, 10, with_ratings=True))


def test_csv_reader_with_half_stars(tmp_path: pathlib.Path) -> None:
    text = "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,1,0.5,1\n"
    data = read_ml_ratings_csv(_write(tmp_path, "ratings.csv", text))
    np.testing.assert_array_equal(data.items, [3, 2, 1])  # ids 1, 296, 306 -> 1, 2, 3; 306 came first
    np.testing.assert_array_equal(data.ratings, [3.5, 5.0, 0.5])
    assert data.ratings.dtype == np.float32 and data.timestamps.dtype == np.int64


def test_csv_bad_header(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, "ratings.csv", "user,item,rating,ts\n1,2,3,4\n")
    with pytest.raises(DataFormatError, match=f"{path}:1: header"):
        read_ml_ratings_csv(path)


@pytest.mark.parametrize(
    ("reader", "text", "line", "what"),
    [
        (read_ml1m_ratings, "1::2::3::4\n1::2::3::4::5\n", 2, "5 fields"),
        (read_ml1m_ratings, "1::2::3::4\n1::2::3::4\n1::2::3\n", 3, "3 fields"),
        (read_ml1m_ratings, "1::2::3::4\n1::x::3::4\n", 2, "item 'x'"),
        (read_ml1m_ratings, "1::2::3::4::9\n1::2::3::4\n", 1, "5 fields"),
        (read_ml1m_ratings, "1::2::3::4\n1:2::3::4\n", 2, "3 fields"),
        (read_ml100k_udata, "1\t2\t3\t4\n\n1\t2\t\t4\n", 3, "rating ''"),
        (read_ml100k_udata, "1\t2\t3\t4\n1\t2\t3\t4.5\n", 2, "timestamp '4.5'"),
        (read_ml_ratings_csv, "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,nan,4\n", 3, "rating 'nan'"),
        (read_ml_ratings_csv, "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", 3, "3 fields"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: pathlib.Path, reader, text: str, line: int, what: str):
    path = _write(tmp_path, "ratings", text)
    with pytest.raises(DataFormatError) as err:
        reader(path)
    assert f"{path}:{line}:" in str(err.value) and what in str(err.value), str(err.value)
