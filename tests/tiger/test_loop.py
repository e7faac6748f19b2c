"""TIGER end to end on a tiny Beauty-like data dir: short users dropped with a message, valid IDs, exact resume."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from scaling_rec.errors import ConfigError
from scaling_rec.tiger_config import default_config, validate
from scaling_rec.train.tiger_loop import train_and_evaluate

NUM_ITEMS = 24


def _data_dir(root: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    s3, meta = root / "amazon-beauty-s3rec", root / "amazon-beauty-meta"
    (s3 / "p5_asin").mkdir(parents=True)
    meta.mkdir()
    lines = [[1, 2, 3], [4, 5, 6, 7]]  # items 1..24 appear first in order 1, 2, ... (the ASIN join)
    lines += [list(range(8, NUM_ITEMS + 1))]
    lines += [list(rng.integers(1, NUM_ITEMS + 1, size=rng.integers(3, 9))) for _ in range(30)]
    lines += [[5, 9], [11]]  # two users with < 3 events
    (s3 / "Beauty.txt").write_text("".join(f"{u + 1} " + " ".join(map(str, s)) + "\n" for u, s in enumerate(lines)))
    (s3 / "p5_asin" / "user_sequence.txt").write_text(
        "".join(f"U{u} " + " ".join(f"A{i}" for i in s) + "\n" for u, s in enumerate(lines)))
    words = ["red", "blue", "nail", "hair", "cream", "brush"]
    (meta / "item_id_to_int.json").write_text(json.dumps({f"A{i}": i for i in range(1, NUM_ITEMS + 1)}))
    rows = "".join(f'{i},{i},"{words[i % 6]} {words[(i * 5) % 6]} {i % 3}"\n' for i in range(1, NUM_ITEMS + 1))
    (meta / "products_lookup.csv").write_text(",global_product_id,name\n" + rows)
    attrs = {str(i): [i % 4, 10 + i % 3] for i in range(1, NUM_ITEMS + 1)}
    (s3 / "Beauty_item2attributes.json").write_text(json.dumps(attrs))
    return root


def _config(data_dir: pathlib.Path):
    c = default_config()
    c.data.data_dir, c.data.max_items, c.data.encoder_dim = str(data_dir), 3, 4
    c.ids.method, c.ids.levels, c.ids.codebook_size = "rqkmeans", 2, 4
    c.model.update(d_model=16, num_layers=1, num_heads=2, head_dim=8, d_ff=32, user_buckets=7)
    c.train.update(batch_size=8, num_steps=4, log_every=1, eval_every=2, warmup_steps=2)
    c.eval.update(beam_width=10, batch_size=16, valid_users=0, test_users=0)
    c.logging.progress = False
    return c


@pytest.fixture
def data_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    return _data_dir(tmp_path / "data")


def test_run_resume_and_short_users(data_dir: pathlib.Path, tmp_path: pathlib.Path, capsys) -> None:
    c = _config(data_dir)
    full = train_and_evaluate(c, tmp_path / "a")
    assert "dropped 2 users with < 3 interactions (3 events)" in capsys.readouterr().err
    assert full["status"] == "ok" and full["steps"] == 4 and full["dropped_users"] == 2
    assert full["num_test_users"] == 33 and full["ids_stats"]["unique_after_last_token"]
    assert 0.0 <= full["eval"]["test/recall@10"] <= 1.0 and len(full["curve"]) == 2
    assert full["encoder"] == "tfidf-svd" and full["ids_method"] == "rqkmeans"
    part = train_and_evaluate(c, tmp_path / "b", max_steps=1)
    assert part["status"] == "partial" and part["steps"] == 1
    resumed = train_and_evaluate(c, tmp_path / "b")
    assert resumed["status"] == "ok" and resumed["steps"] == 4
    np.testing.assert_allclose(resumed["final_train_loss"], full["final_train_loss"], rtol=1e-5)
    for k, v in full["eval"].items():
        np.testing.assert_allclose(resumed["eval"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)
    assert train_and_evaluate(c, tmp_path / "b") == resumed  # finished runs are not rerun


def test_config_errors() -> None:
    c = default_config()
    c.eval.beam_width = 5
    with pytest.raises(ConfigError, match="beam_width >= 10"):
        validate(c)
    c = default_config()
    c.ids.method = "kmeans"
    with pytest.raises(ConfigError, match="ids.method='kmeans'"):
        validate(c)
