"""CTR tables with named fields (data.name='table', issue 18): CSV / TSV / Parquet / a Parquet directory give one
dataset; a Criteo TSV converted to Parquet gives read_criteo's; errors name the column, file and line or row;
the run id follows the file's content; a tiny run trains on a Parquet file through the config."""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from scaling_rec import ctr_config
from scaling_rec.data import ctr, ctr_dataset, ctr_readers
from scaling_rec.errors import ConfigError, DataFormatError

FIELDS = ctr_readers.TableFields("click", ("site", "app", "device"), ("price", "age"))


def _fields(label: str, categorical: str, numeric: str) -> ctr_readers.TableFields:
    return ctr_readers.TableFields.from_config(ml_collections.ConfigDict(
        dict(label=label, categorical=categorical, numeric=numeric)))


def _clicks(n: int = 600, seed: int = 0) -> pa.Table:
    """A click log whose label depends on site and price; string, integer and null-holding columns."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 12, n)
    price = np.round(rng.exponential(20.0, n), 2)
    logit = (site % 3 - 1.0) * 1.5 + (price > 20) - 0.5
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    device = [None if rng.random() < 0.1 else ["ios", "android", "web"][int(i)] for i in rng.integers(0, 3, n)]
    return pa.table({
        "user": rng.integers(0, 50, n),  # a column the fields do not name: ignored
        "click": click, "site": [f"s{v}" for v in site], "app": rng.integers(100, 130, n), "device": device,
        "price": pa.array([None if rng.random() < 0.05 else float(p) for p in price]),
        "age": rng.integers(18, 70, n),
    })


def _assert_same(a: ctr_dataset.CTRDataset, b: ctr_dataset.CTRDataset) -> None:
    assert (a.field_names, a.vocab_sizes, a.num_dense, a.oov_counts) == (b.field_names, b.vocab_sizes, b.num_dense,
                                                                          b.oov_counts)
    for s in ("train", "valid", "test"):
        x, y = a.split(s), b.split(s)
        np.testing.assert_array_equal(x.cat_NxF, y.cat_NxF)
        np.testing.assert_array_equal(x.label_N, y.label_N)
        if x.num_NxM is None:
            assert y.num_NxM is None
        else:
            assert x.num_NxM.dtype == y.num_NxM.dtype == np.float32
            np.testing.assert_array_equal(x.num_NxM, y.num_NxM)


def test_parquet_csv_tsv_and_a_parquet_directory_give_one_dataset(tmp_path):
    table = _clicks()
    pq.write_table(table, tmp_path / "clicks.parquet")
    pacsv.write_csv(table, tmp_path / "clicks.csv")
    pacsv.write_csv(table, tmp_path / "clicks.tsv", pacsv.WriteOptions(delimiter="\t"))
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, start in enumerate(range(0, len(table), 250)):
        pq.write_table(table.slice(start, 250), parts / f"part-{k:03d}.parquet")
    base = ctr_readers.read_table(tmp_path / "clicks.parquet", FIELDS)
    assert base.field_names == ("site", "app", "device") and base.num_dense == 2
    assert (len(base.train), len(base.valid), len(base.test)) == ctr_dataset.split_sizes(600, (0.8, 0.1, 0.1))
    assert base.vocab_sizes[2] == 5  # ios, android, web and '' (null) + the OOV row
    assert base.train.num_NxM.min() >= 0 and np.isfinite(base.train.num_NxM).all()
    for other in (ctr_readers.read_table(tmp_path / "clicks.csv", FIELDS, chunk_bytes=2048),
                  ctr_readers.read_table(tmp_path / "clicks.tsv", FIELDS),
                  ctr_readers.read_table(parts, FIELDS, chunk_rows=64),
                  ctr_readers.read_table(tmp_path / "clicks.parquet", FIELDS, chunk_rows=37)):
        _assert_same(base, other)
    bucket = ctr_readers.read_table(tmp_path / "clicks.parquet", FIELDS, numeric="bucket", min_count=2)
    assert bucket.field_names == ("site", "app", "device", "price", "age") and bucket.num_dense == 0
    _assert_same(bucket, ctr_readers.read_table(tmp_path / "clicks.csv", FIELDS, numeric="bucket", min_count=2))


def _criteo_tsv(path, n: int = 300, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for _ in range(n):
            ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-3, 10 ** int(rng.integers(1, 6)))))
                    for _ in range(13)]
            cats = ["" if rng.random() < 0.1 else format(int(rng.zipf(1.5)) % 997, "08x") for _ in range(26)]
            fh.write("\t".join([str(int(rng.random() < 0.3)), *ints, *cats]) + "\n")


@pytest.mark.parametrize("options", [dict(), dict(numeric="bucket"), dict(min_count=2),
                                     dict(numeric="bucket", hash_buckets=100)])
def test_criteo_tsv_converted_to_parquet_gives_read_criteo(tmp_path, options):
    tsv = tmp_path / "day_0.tsv"
    _criteo_tsv(tsv)
    names = ["label", *(f"I{j}" for j in range(1, 14)), *(f"C{j}" for j in range(1, 27))]
    types = {"label": pa.int64()} | {f"I{j}": pa.int64() for j in range(1, 14)}
    table = pacsv.read_csv(tsv, pacsv.ReadOptions(column_names=names), pacsv.ParseOptions(delimiter="\t"),
                           pacsv.ConvertOptions(column_types=types | {f"C{j}": pa.string() for j in range(1, 27)}))
    pq.write_table(table, tmp_path / "day_0.parquet")
    fields = _fields("label", ",".join(f"C{j}" for j in range(1, 27)), ",".join(f"I{j}" for j in range(1, 14)))
    assert fields == ctr_readers.CRITEO_FIELDS
    criteo = ctr_readers.read_criteo(tsv, **options)
    assert criteo.num_fields == (39 if options.get("numeric") == "bucket" else 26)
    _assert_same(criteo, ctr_readers.read_table(tmp_path / "day_0.parquet", fields, **options))
    _assert_same(criteo, ctr_readers.read_criteo(tsv, chunk_bytes=1024, **options))  # many chunks, same numbers


def test_criteo_rules_by_hand(tmp_path):
    """Ids by value string (train only, min_count), log(1 + max(v, 0)) with missing -> 0, and the
    floor(ln(v)^2) buckets, on values worked out by hand; one split holds every row."""
    i1 = ["", "-5", "0", "1", "2", "3", "100"]
    c1 = ["b", "a", "", "b", "a", "c", "b"]
    tsv = tmp_path / "hand.tsv"
    rows = ["\t".join(["1", v, *["7"] * 12, c, *["x"] * 25]) for v, c in zip(i1, c1, strict=True)]
    tsv.write_text("".join(row + "\n" for row in rows))
    everything = dict(fractions=(1.0, 0.0, 0.0))
    logs = ctr_readers.read_criteo(tsv, **everything)
    np.testing.assert_array_equal(logs.train.cat_NxF[:, 0], [3, 2, 1, 3, 2, 4, 3])  # '' < 'a' < 'b' < 'c'
    np.testing.assert_array_equal(logs.train.num_NxM[:, 0],
                                  np.float32([0, 0, 0, np.log(2), np.log(3), np.log(4), np.log(101)]))
    assert logs.vocab_sizes[:2] == (5, 2) and logs.num_dense == 13
    rare = ctr_readers.read_criteo(tsv, min_count=2, **everything)
    np.testing.assert_array_equal(rare.train.cat_NxF[:, 0], [2, 1, 0, 2, 1, 0, 2])  # '' and 'c' seen once: OOV
    buckets = ctr_readers.read_criteo(tsv, numeric="bucket", **everything)
    # tokens NA, -5, 0, 1, 2, floor(ln(3)^2) = 1, floor(ln(100)^2) = 21; by string: -5 0 1 2 21 NA
    np.testing.assert_array_equal(buckets.train.cat_NxF[:, 26], [6, 1, 2, 3, 4, 3, 5])
    assert buckets.field_names[26] == "I1" and buckets.num_dense == 0


def test_fields_from_the_command_line_strings():
    f = _fields(" click ", "site, app,device,", "price")
    assert f == ctr_readers.TableFields("click", ("site", "app", "device"), ("price",))
    with pytest.raises(ConfigError, match="name no column"):
        _fields("click", "", " ")
    with pytest.raises(ConfigError, match=r"\['site'\] more than once"):
        _fields("click", "site,app", "site")
    with pytest.raises(ConfigError, match="data.fields.label"):
        _fields("", "site", "")


def test_a_missing_column_is_named_with_the_columns_the_file_has(tmp_path):
    table = _clicks(20)
    pq.write_table(table, tmp_path / "c.parquet")
    pacsv.write_csv(table, tmp_path / "c.csv")
    wrong = ctr_readers.TableFields("click", ("site", "country"), ())
    with pytest.raises(DataFormatError, match=r"c.parquet: no column 'country' \(data.fields.categorical\); its "
                                              r"columns are \['user', 'click', 'site'"):
        ctr_readers.read_table(tmp_path / "c.parquet", wrong)
    with pytest.raises(DataFormatError, match=r"c.csv:1: no column 'clicked' \(data.fields.label\); the header has "
                                              r"\['user', 'click'"):
        ctr_readers.read_table(tmp_path / "c.csv", dataclasses.replace(FIELDS, label="clicked"))
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        ctr_readers.read_table(tmp_path / "c.json", FIELDS)


def _csv(path, rows: list[str]) -> None:
    path.write_text("click,site,price\n" + "".join(r + "\n" for r in rows))


def test_bad_labels_and_numbers_name_file_and_line_or_row(tmp_path):
    fields = ctr_readers.TableFields("click", ("site",), ("price",))
    good = [f"{i % 2},s{i % 7},{i}.5" for i in range(300)]
    path = tmp_path / "c.csv"
    _csv(path, good[:150] + ["2,s1,3.0"] + good[150:])  # data row 151 is line 152, in a later chunk
    with pytest.raises(DataFormatError, match=r"c.csv:152: label '2' is not 0 or 1"):
        ctr_readers.read_table(path, fields, chunk_bytes=1024)
    _csv(path, good[:200] + ["1,s1,cheap"] + good[200:])
    with pytest.raises(DataFormatError, match=r"c.csv:202: numeric column price 'cheap' is not a finite number"):
        ctr_readers.read_table(path, fields, chunk_bytes=1024)
    _csv(path, good[:3] + ["1,s1,inf"])
    with pytest.raises(DataFormatError, match=r"c.csv:5: numeric column price 'inf' is not a finite number"):
        ctr_readers.read_table(path, fields)
    _csv(path, good[:3] + ["1,s1"])
    with pytest.raises(DataFormatError, match=r"c.csv:5: 2 columns, expected 3"):
        ctr_readers.read_table(path, fields)
    pq.write_table(pa.table({"click": [0, 1, 1, 3], "site": ["a", "b", "c", "d"], "price": [1.0, 2, 3, 4]}),
                   tmp_path / "p.parquet")
    with pytest.raises(DataFormatError, match=r"p.parquet: row 4: label '3' is not 0 or 1"):
        ctr_readers.read_table(tmp_path / "p.parquet", fields)
    pq.write_table(pa.table({"click": [0, 1], "site": ["a", "b"], "price": ["1.5", "n/a"]}), tmp_path / "s.parquet")
    with pytest.raises(DataFormatError, match=r"s.parquet: row 2: numeric column price 'n/a' is not a finite"):
        ctr_readers.read_table(tmp_path / "s.parquet", fields)


def _table_config(path, **data) -> ml_collections.ConfigDict:
    c = ctr_config.default_config()
    c.data.name, c.data.path = "table", str(path)
    c.data.fields.label, c.data.fields.categorical, c.data.fields.numeric = "click", "site,app,device", "price,age"
    c.data.update(data)
    return c


def test_config_and_run_id_follow_the_files_content(tmp_path):
    pq.write_table(_clicks(seed=0), tmp_path / "clicks.parquet")
    c = _table_config(tmp_path / "clicks.parquet")
    ctr_config.validate(c)
    before = ctr_config.run_id(c)
    assert ctr_config.run_id(c) == before
    pq.write_table(_clicks(seed=1), tmp_path / "clicks.parquet")
    assert ctr_config.run_id(c) != before
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(_clicks(seed=0), parts / "part-0.parquet")
    c = _table_config(parts)
    assert ctr.source_files(c.data) == [parts / "part-0.parquet"]
    one_part = ctr_config.run_id(c)
    pq.write_table(_clicks(seed=2), parts / "part-1.parquet")
    assert ctr.source_files(c.data) == [parts / "part-0.parquet", parts / "part-1.parquet"]
    assert ctr_config.run_id(c) != one_part
    c.data.path = ""
    with pytest.raises(ConfigError, match="data.path must name the CSV / TSV / Parquet file"):
        ctr.source_files(c.data)


def test_default_config_keeps_the_fields_out_of_older_run_ids():
    c = ctr_config.default_config()
    without = c.to_dict()
    del without["data"]["fields"]
    assert ctr_config.run_id(c) == ctr_config.run_id(ml_collections.ConfigDict(without))


def test_tiny_run_trains_on_a_parquet_file_named_by_the_config(tmp_path):
    from experiments.wukong.frappe import get_config
    from scaling_rec.train.ctr_loop import train_and_evaluate

    pq.write_table(_clicks(2000), tmp_path / "clicks.parquet")
    c = get_config("tiny")
    c.data = _table_config(tmp_path / "clicks.parquet", cache_dir=str(tmp_path / "cache"), split=(0.7, 0.2, 0.1)).data
    c.model.family, c.model.mlp_depth = "dlrm", 1
    c.train.batch_size, c.train.num_epochs, c.train.num_steps, c.train.eval_every = 128, 0.0, 40, 20
    c.train.learning_rate, c.eval.patience, c.logging.progress = 1e-2, 0, False
    result = train_and_evaluate(c, tmp_path / "work")
    assert result["status"] == "ok" and result["examples_seen"] == 40 * 128
    assert result["dataset"] == "clicks" and result["data_files"][0]["path"].endswith("clicks.parquet")
    assert result["eval"]["test/auc"] > 0.6  # the label follows site and price (chance = 0.5)
    assert list((tmp_path / "cache" / "ctr").glob("table-*.npz"))  # encoded once, then read from the cache
