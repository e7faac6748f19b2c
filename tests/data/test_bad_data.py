"""Bad data gets a DataFormatError naming file, line and field (issue 14, finding 5), from every loader:
too-short histories, bytes that are not UTF-8, integers beyond int64."""

from __future__ import annotations

import pathlib
import zipfile

import pytest

from scaling_rec.data.amazon import read_s3rec
from scaling_rec.data.ctr import read_frappe_logs, read_libfm
from scaling_rec.data.ctr_readers import read_criteo
from scaling_rec.data.movielens import read_ml1m_ratings, read_ml100k_udata, read_ml_ratings_csv
from scaling_rec.data.sequences import from_user_lists
from scaling_rec.data.splits import leave_one_out
from scaling_rec.errors import DataFormatError

BIG = "9" * 30  # far beyond int64


def _bytes(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_no_user_with_three_events_is_named_with_the_counts():
    data = from_user_lists("short", [[1, 2], [3], [2, 1]], source="short.txt")
    with pytest.raises(DataFormatError) as err:
        leave_one_out(data)
    msg = str(err.value)
    assert msg.startswith("short.txt: no user has the 3 events leave-one-out needs")
    assert "read 3 users with 5 events, at most 2 per user" in msg


_CRITEO_ROW = "\t".join(["1", *["1"] * 13, *["a"] * 26]) + "\n"


@pytest.mark.parametrize(
    ("reader", "name", "data", "where"),
    [
        (read_s3rec, "Beauty.txt", b"1 2 3\n2 3 \xff4\n", ":2: byte 0xff at column 5"),
        (read_ml100k_udata, "u.data", b"1\t2\t3\t4\n1\t\xe92\t3\t5\n", ":2: byte 0xe9 at column 3"),
        (read_ml1m_ratings, "ratings.dat", b"1::2::3::4\n\n1::2::3::\xff\n", ":3: byte 0xff at column 10"),
        (read_ml_ratings_csv, "ratings.csv", b"userId,movieId,rating,timestamp\n1,2,3,\xc3\n", ":2: byte 0xc3"),
        (lambda p: read_libfm(p, 2), "f.libfm", b"1 1:1 2:1\n0 3:1 \xff:1\n", ":2: byte 0xff at column 7"),
        (read_criteo, "c.tsv", _CRITEO_ROW.encode() + b"0\t\xff" + _CRITEO_ROW[2:].encode(), ":2: byte 0xff"),
    ],
)
def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path, reader, name, data, where):
    path = _bytes(tmp_path, name, data)
    with pytest.raises(DataFormatError) as err:
        reader(path)
    assert str(err.value).startswith(f"{path}{where}"), str(err.value)
    assert "UTF-8" in str(err.value)


def test_frappe_zip_member_that_is_not_utf8(tmp_path):
    path = tmp_path / "Mobile_Frappe.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Mobile_Frappe/frappe/frappe.csv", b"cnt\tuser\n1\t\xff\n")
    with pytest.raises(DataFormatError, match=r"frappe\.csv:2: byte 0xff at column 3 is not UTF-8"):
        read_frappe_logs(path)


@pytest.mark.parametrize(
    ("reader", "name", "text", "where"),
    [
        (read_s3rec, "Beauty.txt", f"1 2 3\n2 3 {BIG} 4\n", ":2: item 2 (field 3) '999"),
        (read_s3rec, "Beauty.txt", f"{BIG} 2 3\n", ":1: user id (field 1) '999"),
        (read_ml100k_udata, "u.data", f"1\t2\t3\t4\n1\t3\t4\t{BIG}\n", ":2: timestamp '999"),
        (read_ml1m_ratings, "ratings.dat", f"1::2::3::4\n1::{BIG}::3::4\n", ":2: item '999"),
        (read_ml_ratings_csv, "ratings.csv", f"userId,movieId,rating,timestamp\n{BIG},2,3,4\n", ":2: user '999"),
        (lambda p: read_libfm(p, 2), "f.libfm", f"1 1:1 {BIG}:1\n", ":1: feature 2's index '999"),
    ],
)
def test_an_integer_beyond_int64_names_the_field_not_the_line(tmp_path, reader, name, text, where):
    path = _bytes(tmp_path, name, text.encode())
    with pytest.raises(DataFormatError) as err:
        reader(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}{where}"), msg
    assert ("does not fit int64" in msg) and BIG not in msg  # the number is shown cut, the line not at all


def test_item_content_files_that_are_not_utf8(tmp_path):
    """TIGER's item content readers (JSON attributes, P5 sequences, the titles CSV) name file and line too."""
    from scaling_rec.data.amazon_content import read_first_appearance_asins, read_item_attributes, read_titles

    attrs = _bytes(tmp_path, "attrs.json", b'{"1": [1, 2],\n "2": ["\xff"]}')
    with pytest.raises(DataFormatError, match=r"attrs\.json:2: byte 0xff at column 9 is not UTF-8"):
        read_item_attributes(attrs, 2)
    seqs = _bytes(tmp_path, "user_sequence.txt", b"u1 A B\nu2 \xe9C\n")
    with pytest.raises(DataFormatError, match=r"user_sequence\.txt:2: byte 0xe9 at column 4"):
        read_first_appearance_asins(seqs)
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "item_id_to_int.json").write_text('{"A": 1}')
    _bytes(meta, "products_lookup.csv", b",global_product_id,name\n0,1,caf\xe9\n")
    with pytest.raises(DataFormatError, match=r"products_lookup\.csv:2: byte 0xe9 at column 8"):
        read_titles(meta)
