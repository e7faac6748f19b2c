"""TIGER end to end on a tiny Beauty-like data dir: short users dropped with a message, valid IDs, exact resume,
multi-step calls equal to single steps, the best-validation checkpoint tested, sampled evaluation users."""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Iterator

import ml_collections
import numpy as np
import pytest

from scaling_rec.config import ADDED_KEYS
from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError
from scaling_rec.tiger_config import default_config, run_id, validate
from scaling_rec.train.tiger_loop import eval_subset, popularity_metrics, train_and_evaluate
from tests._jax_cache import compilation_cache

NUM_ITEMS = 24


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tiny runs here share their shapes: each after the first loads its programs instead of compiling."""
    with compilation_cache(tmp_path_factory.mktemp("jax_cache")):
        yield


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


def test_a_time_limit_off_the_evaluation_schedule_leaves_the_resumed_result_unchanged(
        data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A call resumed from step 3 and stopped at 4 (evaluations at 3 and 6) evaluates for its partial result only:
    the resumed run's best step, curve and best metrics are the uninterrupted run's (the stop's evaluation was
    once checkpointed, best/ included, and became the best step: best test NDCG@10 .19 instead of .21)."""
    c = _config(data_dir)
    c.train.update(num_steps=6, eval_every=3, learning_rate=0.05, warmup_steps=1)
    full = train_and_evaluate(c, tmp_path / "full")
    train_and_evaluate(c, tmp_path / "b", max_steps=3)
    part = train_and_evaluate(c, tmp_path / "b", max_steps=1)
    assert part["status"] == "partial" and part["steps"] == 4 and part["best"] is not None
    resumed = train_and_evaluate(c, tmp_path / "b")
    assert resumed["best_step"] == full["best_step"]
    assert [p["step"] for p in resumed["curve"]] == [p["step"] for p in full["curve"]] == [3, 6]
    for split in ("valid", "test"):
        for k, v in full["best"][split].items():
            np.testing.assert_allclose(resumed["best"][split][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


def test_config_errors() -> None:
    c = default_config()
    c.eval.beam_width = 5
    with pytest.raises(ConfigError, match="beam_width >= 10"):
        validate(c)
    c = default_config()
    c.ids.method = "kmeans"
    with pytest.raises(ConfigError, match=r"'ids\.method' = 'kmeans' is not one of"):
        validate(c)


def test_multi_step_calls_equal_single_steps(data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    c = _config(data_dir)
    c.train.update(log_every=2, num_steps=6)
    one = train_and_evaluate(c, tmp_path / "one")
    c.train.steps_per_call = 2
    two = train_and_evaluate(c, tmp_path / "two")
    assert two["steps"] == 6 and [p["step"] for p in two["curve"]] == [2, 4, 6]
    for a, b in zip(one["curve"], two["curve"], strict=True):
        for k in a:
            if k != "elapsed_s":
                np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(two["final_train_loss"], one["final_train_loss"], rtol=1e-5)
    part = train_and_evaluate(c, tmp_path / "two_resumed", max_steps=1)  # rounded up to one whole call
    assert part["status"] == "partial" and part["steps"] == 2
    resumed = train_and_evaluate(c, tmp_path / "two_resumed")
    for k, v in two["eval"].items():
        np.testing.assert_allclose(resumed["eval"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


def test_best_validation_checkpoint_is_the_one_tested(data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """result['best'] is the curve's best validation NDCG@10 (the first of ties), and its test metrics are
    those of a run stopped at that step (the learning rate does not depend on num_steps)."""
    c = _config(data_dir)
    c.train.update(num_steps=8, eval_every=2, learning_rate=0.05, warmup_steps=1)
    full = train_and_evaluate(c, tmp_path / "full")
    ndcg = [p["valid/ndcg@10"] for p in full["curve"]]
    best = full["best"]
    assert best["step"] == full["curve"][int(np.argmax(ndcg))]["step"] and best["valid"]["ndcg@10"] == max(ndcg)
    assert best["step"] < full["steps"], "the restore path is not exercised: pick another learning rate"
    c.train.num_steps = best["step"]
    short = train_and_evaluate(c, tmp_path / "short")
    for k, v in short["eval"].items():
        np.testing.assert_allclose(best["test"][k.removeprefix("test/")], v, rtol=1e-5, atol=1e-7, err_msg=k)
    assert set(full["popularity_test"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


@pytest.mark.slow
def test_a_run_killed_between_its_best_and_its_checkpoint_resumes(data_dir: pathlib.Path,
                                                                    tmp_path: pathlib.Path) -> None:
    """best/ is saved before ckpt/ at an improving evaluation: killed between the two, the rerun resumed from
    the older checkpoint and, replaying, saved the same best step again, which orbax refuses
    (StepAlreadyExistsError) on every rerun."""
    c = _config(data_dir)
    c.train.update(num_steps=2, eval_every=2)  # one evaluation, so step 2 is the best
    full = train_and_evaluate(c, tmp_path / "a")
    (result,) = (tmp_path / "a").rglob("result.json")
    result.unlink()
    shutil.rmtree(result.parent / "ckpt")  # as if killed after best/2 was written, before ckpt/2
    assert [p.name for p in (result.parent / "best").iterdir() if p.name.isdigit()] == ["2"]
    again = train_and_evaluate(c, tmp_path / "a")
    assert again["status"] == "ok" and again["best"]["step"] == 2
    for k, v in full["eval"].items():
        np.testing.assert_allclose(again["eval"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


def test_eval_subset_is_a_seeded_uniform_sample() -> None:
    assert np.array_equal(eval_subset(10, 0, seed=0), np.arange(10))
    assert np.array_equal(eval_subset(10, 12, seed=0), np.arange(10))
    a = eval_subset(1000, 100, seed=0)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and np.array_equal(a, eval_subset(1000, 100, 0))
    assert not np.array_equal(a, eval_subset(1000, 100, seed=1))
    assert a.max() > 500, "a sample, not the first users"


def test_popularity_metrics_by_hand() -> None:
    # item counts: 3 x item 2, 2 x item 1, 1 x item 3 -> ranks 2:0, 1:1, 3:2 (ties by id)
    train = SequenceData(name="t", num_items=4, num_users=2, items=np.array([2, 2, 1, 2, 1, 3], np.int32),
                         timestamps=None, ratings=None, user_offsets=np.array([0, 3, 6]), source="test")
    m = popularity_metrics(train, np.array([2, 1, 3, 4]), ks=(1, 2))
    assert m["recall@1"] == 0.25 and m["recall@2"] == 0.5
    np.testing.assert_allclose(m["ndcg@2"], (1 + 1 / np.log2(3)) / 4)


def test_popularity_metrics_count_ties_by_their_expected_rank() -> None:
    # items 1 and 2 are both seen twice, 3 and 4 never: a target among tied items takes the mean over the
    # tied ranks (ranking by item id gave item 1 rank 0 and recall@1 = 1).
    train = SequenceData(name="t", num_items=4, num_users=2, items=np.array([1, 2, 2, 1], np.int32),
                         timestamps=None, ratings=None, user_offsets=np.array([0, 2, 4]), source="test")
    m = popularity_metrics(train, np.array([1]), ks=(1, 2, 3))
    assert m["recall@1"] == 0.5 and m["recall@2"] == 1.0
    np.testing.assert_allclose(m["ndcg@1"], 0.5)
    np.testing.assert_allclose(m["ndcg@2"], (1 + 1 / np.log2(3)) / 2)
    unseen = popularity_metrics(train, np.array([3]), ks=(2, 3, 4))
    assert unseen["recall@2"] == 0.0 and unseen["recall@3"] == 0.5 and unseen["recall@4"] == 1.0


def test_steps_per_call_must_divide_and_keeps_old_ids() -> None:
    c = default_config()
    before = ml_collections.ConfigDict(c.to_dict())  # the schema before the key existed
    del before.train["steps_per_call"]
    assert ADDED_KEYS["train.steps_per_call"] == 1 and run_id(c) == run_id(before)
    c.train.steps_per_call = 3
    assert run_id(c) != run_id(before)
    with pytest.raises(ConfigError, match="train.num_steps=200000 must be a multiple of train.steps_per_call=3"):
        validate(c)


def test_a_user_keeps_its_token_from_training_to_evaluation() -> None:
    """A dropped short user before the others shifted every later user's evaluation index (split.user_index
    counts the dropped), so each was tested with another user's token."""
    from scaling_rec.data.splits import leave_one_out
    from scaling_rec.train.tiger_loop import eval_pairs, training_pairs

    seqs = [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]]  # user 0 has < 3 events: dropped
    split = leave_one_out(SequenceData(
        name="t", num_items=11, num_users=3, items=np.concatenate(seqs).astype(np.int32), timestamps=None,
        ratings=None, user_offsets=np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64), source="t"))
    hist, _, users = training_pairs(split.train, 20)
    trained = {int(h[0]): int(u) for h, u in zip(hist, users, strict=True)}  # first item -> user index
    for part in (split.valid, split.test):
        eval_hist, _, eval_users = eval_pairs(part, 20)
        assert {int(h[0]): int(u) for h, u in zip(eval_hist, eval_users, strict=True)} == trained
