"""The ML-1M path end to end on a generated file in the exact `ratings.dat` format (the real ratings
cannot be brought onto these machines): loader → leave-one-out → HSTU with the time bias → result."""

from __future__ import annotations

from scaling_rec.data.movielens import write_ml1m_ratings_dat
from scaling_rec.data.synthetic import synthetic_sequences
from scaling_rec.train.loop import train_and_evaluate
from tests.train._tiny import tiny_config


def test_ml1m_ratings_dat_trains_with_time_bias(tmp_path):
    data = synthetic_sequences(120, 40, with_timestamps=True, with_ratings=True, mean_len=25.0, seed=3)
    write_ml1m_ratings_dat(tmp_path / "data" / "movielens-1m" / "ratings.dat", data, shuffle_seed=1)
    c = tiny_config(num_steps=6, eval_every=6)
    c.data.name = "ml-1m"
    c.data.data_dir = str(tmp_path / "data")
    c.data.max_len = 32
    c.eval.exclude_history = True
    r = train_and_evaluate(c, tmp_path / "runs")
    assert r["status"] == "ok"
    assert r["num_items"] == 40
    assert r["eval"]["test/num_examples"] == 120
    # the time-bias table exists (timestamps present) and is part of N_dense: 129 rows per block
    c2 = c.copy_and_resolve_references()
    c2.model.time_bias = False
    r2 = train_and_evaluate(c2, tmp_path / "runs")
    assert r["n_dense"] - r2["n_dense"] == 2 * (c.model.num_time_buckets + 1)
