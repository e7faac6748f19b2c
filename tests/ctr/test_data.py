"""CTR data: Frappe rebuild counts, Criteo reader (CSV and TSV), libFM reader, OOV, errors, cache."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_rec import ctr_config
from scaling_rec.data import ctr, ctr_dataset, ctr_readers
from scaling_rec.errors import DataFormatError


@pytest.fixture(scope="module")
def frappe(real_data_dir, tmp_path_factory):
    c = ctr_config.default_config()
    c.data.data_dir = str(real_data_dir)
    cache = tmp_path_factory.mktemp("cache")
    first = ctr.load_ctr(c.data, cache_dir=cache)
    return first, ctr.load_ctr(c.data, cache_dir=cache)  # second load comes from the cache


@pytest.mark.data
def test_frappe_rebuild_counts(frappe):
    data, cached = frappe
    assert (len(data.train), len(data.valid), len(data.test)) == (202_027, 57_722, 28_860)
    labels = np.concatenate([data.split(s).label_N for s in ("train", "valid", "test")])
    assert labels.sum() == ctr.FRAPPE_LOGS and len(labels) == 3 * ctr.FRAPPE_LOGS
    assert data.field_names == ctr.FRAPPE_FIELDS
    # Train vocabularies (incl. the OOV row) are within a few values of the NFM cardinalities.
    for ours, nfm in zip(data.vocab_sizes, ctr.NFM_FRAPPE_CARDINALITIES, strict=True):
        assert abs((ours - 1) - nfm) <= 3
    np.testing.assert_array_equal(cached.train.cat_NxF, data.train.cat_NxF)
    np.testing.assert_array_equal(cached.test.label_N, data.test.label_N)
    assert cached.vocab_sizes == data.vocab_sizes and cached.oov_counts == data.oov_counts


def test_frappe_negatives_avoid_used_apps():
    logs = [["1", "10", "morning"], ["1", "11", "morning"], ["2", "10", "evening"], ["3", "12", "morning"],
            ["4", "13", "noon"], ["4", "14", "noon"], ["5", "15", "night"], ["5", "16", "night"]]
    rows, label = ctr.frappe_with_negatives(logs, seed=0)
    assert len(rows) == 24 and label.sum() == 8
    for r in rows[4:]:  # user 1 in the morning used apps 10 and 11: neither may be its negative
        assert not (r[0] == "1" and r[2] == "morning" and r[1] in ("10", "11"))
        assert not (r[0] == "2" and r[1] == "10") and not (r[0] == "3" and r[1] == "12")
    with pytest.raises(DataFormatError, match="cannot sample"):
        ctr.frappe_with_negatives(logs[:3], seed=0)  # user 1 used 2 of the 2 other apps... only 1 left


def test_frappe_negatives_are_distinct_over_a_user_and_contexts_logs():
    """Drawn per log, two logs of one user and context could draw the same app: a repeated row, which the row
    split may put in train and in test (the rebuilt Frappe had 53 test rows equal to a train row)."""
    others = [[str(u), str(a), "noon"] for u, a in zip(range(2, 12), range(10, 20), strict=True)]
    logs = others + [["1", "10", "morning"]] * 4  # 4 logs of one user and context: 8 negatives from 9 apps
    for seed in range(20):
        rows, _ = ctr.frappe_with_negatives(logs, seed=seed)
        negatives = [tuple(r) for r in rows[len(logs):] if r[0] == "1"]
        assert len(negatives) == 8 == len(set(negatives)) and ("1", "10", "morning") not in negatives
    with pytest.raises(DataFormatError, match="used 1 of the 10 apps.*drew 8 negatives; cannot sample 2 more"):
        ctr.frappe_with_negatives(logs + [["1", "10", "morning"]], seed=0)


def test_split_sizes_match_bars():
    assert ctr_dataset.split_sizes(288_609, (0.7, 0.2, 0.1)) == (202_027, 57_722, 28_860)


def _criteo_path(real_data_dir):
    return real_data_dir / "ctr-samples-deepctr" / "criteo_sample.txt"


@pytest.mark.data
def test_criteo_csv_and_tsv_agree(real_data_dir, tmp_path):
    csv = ctr_readers.read_criteo(_criteo_path(real_data_dir))
    assert len(csv.train) + len(csv.valid) + len(csv.test) == 200
    assert csv.num_dense == 13 and csv.num_fields == 26 and csv.train.num_NxM.shape[1] == 13
    assert np.all(np.isfinite(csv.train.num_NxM)) and np.all(csv.train.num_NxM >= 0)
    assert csv.oov_counts["valid"] > 0  # 200 rows: many categorical values appear only once
    lines = _criteo_path(real_data_dir).read_text().splitlines()[1:]
    tsv = tmp_path / "train.txt"
    tsv.write_text("".join(line.replace(",", "\t") + "\n" for line in lines))
    raw = ctr_readers.read_criteo(tsv)
    np.testing.assert_array_equal(raw.train.cat_NxF, csv.train.cat_NxF)
    np.testing.assert_allclose(raw.test.num_NxM, csv.test.num_NxM)


@pytest.mark.data
def test_criteo_bucket_and_hash_modes(real_data_dir):
    b = ctr_readers.read_criteo(_criteo_path(real_data_dir), numeric="bucket", hash_buckets=1000)
    assert b.num_dense == 0 and b.num_fields == 39 and b.vocab_sizes == (1001,) * 39
    assert b.train.cat_NxF.min() >= 1 and b.train.cat_NxF.max() <= 1000
    assert ctr_readers.criteo_numeric_token("") == "NA" and ctr_readers.criteo_numeric_token("1") == "1"
    assert ctr_readers.criteo_numeric_token("100") == str(int(np.floor(np.log(100) ** 2)))


def test_criteo_errors_name_file_and_line(tmp_path):
    good = "\t".join(["1"] + ["3"] * 13 + ["ab"] * 26)
    bad_label = "\t".join(["2"] + ["3"] * 13 + ["ab"] * 26)
    path = tmp_path / "c.txt"
    path.write_text(good + "\n" + bad_label + "\n")
    with pytest.raises(DataFormatError, match=r"c.txt:2: label '2'"):
        ctr_readers.read_criteo(path)
    path.write_text(good + "\n" + good + "\n" + "1\t2\t3\n")
    with pytest.raises(DataFormatError, match=r"c.txt:3: 3 columns"):
        ctr_readers.read_criteo(path)


def test_libfm_reader_and_errors(tmp_path):
    path = tmp_path / "f.libfm"
    path.write_text("1 0:1 5:1\n-1 1:1 6:1\n")
    x, y = ctr.read_libfm(path, 2)
    np.testing.assert_array_equal(x, [[0, 5], [1, 6]])
    np.testing.assert_array_equal(y, [1.0, 0.0])
    path.write_text("1 0:1 5:1\n3 1:1 6:1\n")
    with pytest.raises(DataFormatError, match=r"f.libfm:2: label '3'"):
        ctr.read_libfm(path, 2)
    path.write_text("1 0:1 5:1 7:1\n")
    with pytest.raises(DataFormatError, match=r"f.libfm:1: 3 features"):
        ctr.read_libfm(path, 2)


def test_unseen_values_map_to_oov_and_are_counted():
    cols = [["a", "b", "a", "c", "z"], ["x", "x", "y", "x", "x"]]
    split = np.array([0, 0, 0, 1, 2])
    ids, sizes, oov = ctr_dataset.encode_columns(cols, split)
    assert sizes == (3, 3)
    np.testing.assert_array_equal(ids[:, 0], [1, 2, 1, 0, 0])  # 'c' and 'z' never seen in train
    assert oov == {"train": 0, "valid": 1, "test": 1}
    ids2, sizes2, _ = ctr_dataset.encode_columns(cols, split, min_count=2)
    np.testing.assert_array_equal(ids2[:, 0], [1, 0, 1, 0, 0]) and sizes2[0] == 2


def test_synthetic_is_seeded_and_learnable_structure():
    a, pairs_a = ctr.synthetic_ctr(2000, seed=3)
    b, pairs_b = ctr.synthetic_ctr(2000, seed=3)
    np.testing.assert_array_equal(a.train.cat_NxF, b.train.cat_NxF)
    assert pairs_a == pairs_b and len(pairs_a) == 3
    rate = a.train.label_N.mean()
    assert 0.2 < rate < 0.8
