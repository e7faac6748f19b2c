"""Item content for TIGER: the ASIN/title join, the attribute fallback, duplicates, the cached encoder."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from scaling_rec.data.amazon_content import encode_items, load_item_content, read_titles
from scaling_rec.errors import DataFormatError


def _write_beauty(root: pathlib.Path, titles: dict[str, str], csv_extra: str = "", ids_extra: str = "") -> None:
    """A 4-item Beauty-like data dir: sequences over ASINs a..d, titles, attributes."""
    s3, meta = root / "amazon-beauty-s3rec", root / "amazon-beauty-meta"
    (s3 / "p5_asin").mkdir(parents=True)
    meta.mkdir()
    (s3 / "p5_asin" / "user_sequence.txt").write_text("u1 B1 B2 B3\nu2 B2 B4 B1\n")
    (s3 / "Beauty_item2attributes.json").write_text(json.dumps({"1": [1, 2], "2": [2], "3": [3], "4": [1, 3]}))
    asins = ["B1", "B2", "B3", "B4"]
    ids = ", ".join(f'"{a}": {10 + i}' for i, a in enumerate(asins))
    (meta / "item_id_to_int.json").write_text("{" + ids + ids_extra + "}")
    rows = "".join(f'{i},{10 + i},"{titles[a]}"\n' for i, a in enumerate(asins))
    (meta / "products_lookup.csv").write_text(",global_product_id,name\n" + rows + csv_extra)


TITLES = {"B1": "Red Nail Polish", "B2": "", "B3": "Blue nail polish, matte", "B4": "Hair dryer"}


def test_join_order_and_empty_title_fallback(tmp_path: pathlib.Path) -> None:
    _write_beauty(tmp_path, TITLES)
    c = load_item_content("amazon-beauty", tmp_path)
    # Item k = k-th distinct ASIN by first appearance: B1, B2, B3, B4.
    assert c.titles == ["", "Red Nail Polish", "", "Blue nail polish, matte", "Hair dryer"]
    assert c.empty_title_items.tolist() == [2]
    assert c.tokens(2) == ["attr_2"]  # falls back to attributes only
    assert c.tokens(1) == ["red", "nail", "polish", "attr_1", "attr_2"]
    assert c.summary()["num_empty_titles"] == 1


def test_duplicate_metadata_same_content_is_dropped_and_counted(tmp_path: pathlib.Path) -> None:
    _write_beauty(tmp_path, TITLES, csv_extra='4,10,"Red Nail Polish"\n', ids_extra=', "B1": 10')
    c = load_item_content("amazon-beauty", tmp_path)
    assert c.num_duplicate_metadata == 2
    assert c.titles[1] == "Red Nail Polish"


def test_conflicting_duplicate_metadata_raises(tmp_path: pathlib.Path) -> None:
    _write_beauty(tmp_path, TITLES, csv_extra='4,10,"Something else"\n')
    with pytest.raises(DataFormatError, match=r"products_lookup.csv:6: product id 10 repeats line 2"):
        read_titles(tmp_path / "amazon-beauty-meta")
    (tmp_path / "x").mkdir()
    _write_beauty(tmp_path / "x", TITLES, ids_extra=', "B1": 12')
    with pytest.raises(DataFormatError, match="'B1' appears twice with different values"):
        load_item_content("amazon-beauty", tmp_path / "x")


def test_tfidf_svd_encoder_is_deterministic_and_cached(tmp_path: pathlib.Path) -> None:
    _write_beauty(tmp_path, TITLES)
    c = load_item_content("amazon-beauty", tmp_path)
    a = encode_items(c, dim=2, cache=tmp_path / "cache")
    assert a.shape == (5, 2) and a.dtype == np.float32 and not a[0].any()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    b = encode_items(c, dim=2, cache=tmp_path / "cache2")
    np.testing.assert_allclose(a, b, atol=1e-6)
    # The two nail polishes are closer to each other than to the hair dryer.
    d = lambda i, j: np.linalg.norm(a[i] - a[j])
    assert d(1, 3) < d(1, 4)


@pytest.mark.data
def test_real_beauty_titles(real_data_dir: pathlib.Path) -> None:
    c = load_item_content("amazon-beauty", real_data_dir)
    assert c.num_items == 12101 and c.empty_title_items.size == 7 and c.num_duplicate_metadata == 0
    assert c.asins[1:4] == ["B004756YJA", "B004ZT0SSG", "B0020YLEYK"]
    assert c.titles[1] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert all(c.attributes[i].size for i in c.empty_title_items)


def test_original_amazon_meta_format(tmp_path: pathlib.Path) -> None:
    import gzip

    lines = [
        "{'asin': 'B1', 'title': 'Red Polish', 'price': 3.5, 'categories': [['Beauty', 'Nails'], ['Beauty']]}",
        '{"asin": "B2", "title": "Dryer", "brand": "Acme", "category": ["Beauty", "Hair"]}',
        "{'asin': 'B1', 'title': 'Red Polish', 'price': 3.5, 'categories': [['Beauty', 'Nails'], ['Beauty']]}",
    ]
    path = tmp_path / "meta_Beauty.json.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    from scaling_rec.data.amazon_content import read_amazon_meta

    meta, dup = read_amazon_meta(path)
    assert dup == 1 and meta["B1"]["categories"] == ["Beauty", "Nails"] and meta["B2"]["brand"] == "Acme"
    with gzip.open(path, "at") as f:
        f.write("{'asin': 'B2', 'title': 'Other'}\n")
    with pytest.raises(DataFormatError, match="meta_Beauty.json.gz:4: ASIN B2 repeats line 2"):
        read_amazon_meta(path)
