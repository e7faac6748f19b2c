"""The Amazon S3-Rec reader: published counts on the real files, and malformed-line errors."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from scaling_rec.data.amazon import read_s3rec
from scaling_rec.data.registry import load_sequences
from scaling_rec.errors import ConfigError, DataFormatError


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "users", "items", "events"),
    [("amazon-beauty", 22_363, 12_101, 198_502), ("amazon-toys", 19_412, 11_924, 167_597)],
)
def test_real_counts(real_data_dir: pathlib.Path, name: str, users: int, items: int, events: int) -> None:
    data = load_sequences(name, real_data_dir, download=False)
    assert (data.num_users, data.num_items, data.num_events) == (users, items, events)
    assert data.timestamps is None and data.ratings is None
    assert np.unique(data.items).size == items  # every id 1..num_items is used
    assert data.lengths().min() >= 5  # 5-core


@pytest.mark.data
def test_beauty_keeps_file_order_and_ids(real_data_dir: pathlib.Path) -> None:
    data = load_sequences("amazon-beauty", real_data_dir, download=False)
    # Beauty.txt line 2 is "2 6 7 8 9 10 4 11": item ids and their (chronological) order are kept.
    np.testing.assert_array_equal(data.user_items(1), [6, 7, 8, 9, 10, 4, 11])


def _file(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "Beauty.txt"
    path.write_text(text)
    return path


def test_small_file(tmp_path: pathlib.Path) -> None:
    data = read_s3rec(_file(tmp_path, "1 3 1 2\n\n2 2 2 5\n"), name="t")
    np.testing.assert_array_equal(data.user_offsets, [0, 3, 6])
    np.testing.assert_array_equal(data.items, [3, 1, 2, 2, 2, 5])
    assert data.num_items == 5 and data.items.dtype == np.int32


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1 1 2\n2 3 x\n", 2, "'x' is not an integer"),
        ("1 1 2\n2 3 4\n3\n", 3, "no items"),
        ("1 1 2\n2 0 4\n", 2, ">= 1"),
        ("1 1 2\n2 3\n1 4 5\n", 3, "first at line 1"),
        ("1 1 2.5\n", 1, "'2.5'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: pathlib.Path, text: str, line: int, what: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(DataFormatError) as err:
        read_s3rec(path)
    assert f"{path}:{line}:" in str(err.value) and what in str(err.value)


def test_empty_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataFormatError, match="no sequences"):
        read_s3rec(_file(tmp_path, "\n"))


def test_min_rating_is_refused_without_ratings(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="no ratings"):
        load_sequences("amazon-beauty", tmp_path, min_rating=4)


def test_dedup_drops_consecutive_repeats(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.delenv("SCALING_REC_DATA", raising=False)
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "amazon-beauty-s3rec"
    folder.mkdir()
    (folder / "Beauty.txt").write_text("1 4 4 2 4 4\n2 3 3\n")
    data = load_sequences("amazon-beauty", tmp_path, dedup=True, download=False)
    np.testing.assert_array_equal(data.items, [4, 2, 4, 3])
    np.testing.assert_array_equal(data.user_offsets, [0, 3, 4])
    assert load_sequences("amazon-beauty", tmp_path, download=False).num_events == 7
