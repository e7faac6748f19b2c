"""Bring-your-own event logs (scaling_rec/data/events.py): formats, ordering, ids, bad rows, k-core,
and Beauty through the generic path equal to the built-in reader."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from scaling_rec.config import default_config, run_id
from scaling_rec.data import events
from scaling_rec.data.amazon import read_s3rec
from scaling_rec.data.registry import load_sequences
from scaling_rec.data.sequences import from_user_lists
from scaling_rec.data.splits import leave_one_out
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

# Rows out of order on purpose: user 'b' has two events at t=5 (file order must break the tie).
ROWS = [("b", 30, 5, 4.0), ("a", 20, 9, 1.0), ("b", 10, 5, 5.0), ("a", 10, 3, 2.0), ("c", 20, 1, 3.0),
        ("b", 20, 1, 5.0)]
COLS = {"user": "uid", "item": "iid", "timestamp": "ts", "rating": "stars"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["uid", "iid", "ts", "stars"])


def _expected():
    # users a < b < c; items 10 -> 1, 20 -> 2, 30 -> 3; b: (t1, 20), (t5, 30), (t5, 10) in file order.
    return from_user_lists("events", [[1, 2], [2, 3, 1], [2]], num_items=3,
                           timestamps=[[3, 9], [1, 5, 5], [1]], ratings=[[2.0, 1.0], [5.0, 4.0, 5.0], [3.0]])


def _assert_same(a, b):
    assert (a.num_users, a.num_items) == (b.num_users, b.num_items)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.user_offsets, b.user_offsets)
    for x, y in ((a.timestamps, b.timestamps), (a.ratings, b.ratings)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_each_format_gives_sorted_sequences_with_dense_ids(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    df = _frame()
    if suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    _assert_same(events.load_events(path, COLS), _expected())


def test_without_timestamps_the_file_order_is_kept(tmp_path):
    path = tmp_path / "log.csv"
    _frame().to_csv(path, index=False)
    data = events.load_events(path, {"user": "uid", "item": "iid", "timestamp": ""})
    assert data.timestamps is None and data.ratings is None
    np.testing.assert_array_equal(data.items, [2, 1, 3, 1, 2, 2])


def test_small_chunks_give_the_same_result(tmp_path):
    path = tmp_path / "log.csv"
    _frame().to_csv(path, index=False)
    table = events.read_table(path, events.EventColumns.from_mapping(COLS))
    parts = [c for c, _ in events.iter_chunks(path, events.EventColumns.from_mapping(COLS), chunk_bytes=8)]
    assert len(parts) > 2
    np.testing.assert_array_equal(np.concatenate([p.columns["item"] for p in parts]), table.columns["item"])
    assert [p.first_line for p in parts][:2] == [2, 2 + len(parts[0])]


def test_min_rating_and_dedup_and_kcore(tmp_path):
    path = tmp_path / "log.csv"
    _frame().to_csv(path, index=False)
    rated = events.load_events(path, COLS, min_rating=3.0)
    assert rated.num_users == 2 and rated.num_events == 4  # b's three and c's one
    # 2-core: c (1 event) and then item 30 (1 event) go; a keeps 10, 20; b keeps 20, 10.
    core = events.load_events(path, COLS, kcore_k=2)
    np.testing.assert_array_equal(core.items, [1, 2, 2, 1])
    assert core.num_items == 2 and core.num_users == 2


@pytest.mark.parametrize("bad_line, problem", [("b,xx,4,1.0\n", "item 'xx' is not an integer"),
                                              ("b,10\n", "2 fields, the header has 4"),
                                              ("b,10,,1.0\n", "timestamp column 'ts' is empty")])
def test_a_bad_row_names_file_and_line_or_is_counted(tmp_path, bad_line, problem):
    path = tmp_path / "log.csv"
    _frame().to_csv(path, index=False)
    with path.open("a") as fh:
        fh.write(bad_line)
        fh.write("c,30,7,2.0\n")
    cols = events.EventColumns.from_mapping(COLS)
    with pytest.raises(DataFormatError, match=f"log.csv:8: {problem}"):
        events.read_table(path, cols)
    table = events.read_table(path, cols, skip_bad_rows=True)
    assert table.skipped == 1 and len(table.columns["user"]) == len(ROWS) + 1


def test_config_errors_name_the_fix(tmp_path):
    path = tmp_path / "log.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="lacks the mapped columns user='user', timestamp='timestamp'"):
        events.load_events(path, {"item": "iid"})
    with pytest.raises(ConfigError, match="unknown roles"):
        events.load_events(path, {"usr": "uid"})
    with pytest.raises(ConfigError, match="needs data.path"):
        load_sequences("events")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(ConfigError, match="format"):
        events.load_events(tmp_path / "log.json", COLS)
    with pytest.raises(DataNotFoundError, match="not a file"):
        events.load_events(tmp_path / "absent.csv", COLS)


def test_new_data_keys_keep_old_run_ids():
    c = default_config()
    old = default_config()
    for key in ("path", "columns", "kcore"):
        del old.data[key]
    assert run_id(c) == run_id(old)
    c.data.kcore = 5
    assert run_id(c) != run_id(old)


BEAUTY = pathlib.Path(os.environ.get("SCALING_REC_DATA", pathlib.Path(__file__).parents[3] / "shared" / "data"))
BEAUTY = BEAUTY / "amazon-beauty-s3rec" / "Beauty.txt"
needs_beauty = pytest.mark.skipif(not BEAUTY.is_file(), reason=f"Beauty S3-Rec file absent ({BEAUTY})")


def _beauty_csv(tmp_path) -> pathlib.Path:
    """Beauty.txt as a shuffled 'user,item,timestamp' CSV (timestamp = position in the user's line)."""
    data = read_s3rec(BEAUTY)
    pos = np.arange(data.num_events) - np.repeat(data.user_offsets[:-1], data.lengths())
    df = pd.DataFrame({"user": data.user_of_event() + 1, "item": data.items, "timestamp": pos})
    path = tmp_path / "beauty.csv"
    df.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


@needs_beauty
def test_beauty_through_the_event_log_path_gives_the_same_splits(tmp_path):
    ours = leave_one_out(events.load_events(_beauty_csv(tmp_path)))
    ref = leave_one_out(read_s3rec(BEAUTY))
    np.testing.assert_array_equal(ours.user_index, ref.user_index)
    for a, b in ((ours.train, ref.train), (ours.test.history, ref.test.history)):
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.user_offsets, b.user_offsets)
    np.testing.assert_array_equal(ours.valid.targets, ref.valid.targets)
    np.testing.assert_array_equal(ours.test.targets, ref.test.targets)


@pytest.mark.slow  # two tiny runs on Beauty: about 35 s on the 2-core CPU
@needs_beauty
def test_beauty_through_the_event_log_path_gives_the_same_tiny_run_loss(tmp_path):
    from scaling_rec.train.loop import train_and_evaluate
    from tests.train._tiny import tiny_config

    def run(**data):
        c = tiny_config(num_steps=6, eval_every=6, checkpoint_every=0)
        c.data.max_len, c.eval.max_users, c.model.time_bias = 20, 200, False
        c.data.data_dir = str(BEAUTY.parents[1])
        for k, v in data.items():
            c.data[k] = v
        return train_and_evaluate(c, tmp_path)

    ref = run(name="amazon-beauty")
    ours = run(name="events", path=str(_beauty_csv(tmp_path)))
    assert ours["final_train_loss"] == ref["final_train_loss"]
    assert ours["eval"] == ref["eval"]


def test_parquet_nulls_name_the_row_or_are_counted(tmp_path):
    df = _frame()
    df["iid"] = df["iid"].astype("Int64")
    df.loc[3, "iid"] = pd.NA
    path = tmp_path / "log.parquet"
    df.to_parquet(path)
    cols = events.EventColumns.from_mapping(COLS)
    with pytest.raises(DataFormatError, match="log.parquet: row 4: a mapped column is null"):
        events.read_table(path, cols)
    table = events.read_table(path, cols, skip_bad_rows=True)
    assert table.skipped == 1 and table.columns["item"].dtype == np.int64
    np.testing.assert_array_equal(table.columns["item"], [30, 20, 10, 20, 20])


def test_bytes_that_are_not_utf8_are_an_error_not_merged_ids(tmp_path):
    """Latin-1 'café' and 'cafè' decoded with replacement were both 'caf\ufffd': one item for two."""
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"user,item,timestamp\nu1,caf\xe9,1\nu1,caf\xe8,2\nu2,tea,3\n")
    with pytest.raises(DataFormatError, match=r"latin1.csv:2: byte 0xe9 at column 7 is not UTF-8"):
        events.read_table(path, events.EventColumns())


def test_integer_ids_written_two_ways_do_not_merge(tmp_path):
    """The first row makes the user column integer; '01' and '001' would read as user 1. They are malformed
    rows (named, or counted with skip_bad_rows), and a column whose first id is '01' is read as text."""
    path = tmp_path / "padded.csv"
    path.write_text("user,item,timestamp\n1,5,1\n01,5,2\n001,6,3\n2,6,4\n")
    cols = events.EventColumns()
    with pytest.raises(DataFormatError, match=r"padded.csv:3: user '01' is not written as the integer it reads as"):
        events.read_table(path, cols)
    table = events.read_table(path, cols, skip_bad_rows=True)
    assert table.skipped == 2 and table.columns["user"].tolist() == [1, 2]
    first_padded = tmp_path / "text.csv"
    first_padded.write_text("user,item,timestamp\n01,5,1\n1,5,2\n001,6,3\n")
    assert events.load_events(first_padded, {}).num_users == 3


def test_ids_with_spaces_around_them_are_the_same_ids(tmp_path):
    """'1, 5, 10' (a space after each comma): ' 5' and '5' are item 5, as the row scan always read them."""
    path = tmp_path / "spaced.csv"
    path.write_text("user,item,timestamp\n1, 5,10\n2,5,11\n3, 5,12\n")
    table = events.read_table(path, events.EventColumns())
    assert table.columns["item"].tolist() == [5, 5, 5]


def test_a_timestamp_beyond_int64_is_a_bad_row(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("user,item,timestamp\na,1,100\na,2,99999999999999999999\nb,1,3\n")
    with pytest.raises(DataFormatError, match=r"big.csv:3: timestamp '99999999999999999999' does not fit int64"):
        events.read_table(path, events.EventColumns())


def test_parquet_numbers_get_the_checks_of_text(tmp_path):
    """A NaN or fractional float timestamp was cast to int (NaN to INT64_MIN, 5.9 to 5, reordering events); an
    Arrow timestamp column was read in its own unit as if seconds. Now: bad rows, or an error naming the fix."""
    df = pd.DataFrame({"user": ["a", "a", "a", "b"], "item": [1, 2, 3, 1], "timestamp": [5.9, 5.1, float("nan"), 7.0]})
    path = tmp_path / "float.parquet"
    df.to_parquet(path)
    with pytest.raises(DataFormatError, match="float.parquet: row 1: a mapped column is null, not finite, or a fr"):
        events.read_table(path, events.EventColumns())
    table = events.read_table(path, events.EventColumns(), skip_bad_rows=True)
    assert table.skipped == 3 and table.columns["timestamp"].tolist() == [7]
    huge = tmp_path / "huge.parquet"
    pd.DataFrame({"user": ["a", "a"], "item": [1, 2], "timestamp": [1.0, 1e19]}).to_parquet(huge)
    assert events.read_table(huge, events.EventColumns(), skip_bad_rows=True).skipped == 1  # wrapped to < 0
    df["timestamp"] = pd.to_datetime([1, 2, 3, 4], unit="s")
    df.to_parquet(tmp_path / "dt.parquet")
    with pytest.raises(DataFormatError, match="is timestamp.*store it as integers"):
        events.read_table(tmp_path / "dt.parquet", events.EventColumns())
