"""The sequence loop's learning-rate schedule (scaling_rec.train.step.learning_rate_schedule)."""

import math

import pytest

from scaling_rec.config import default_config, run_id
from scaling_rec.train.step import learning_rate_schedule, make_optimizer


def _train(**changes):
    c = default_config()
    c.train.update(learning_rate=1e-2, **changes)
    return c.train


def test_constant_is_the_learning_rate():
    assert learning_rate_schedule(_train(), 100) == 1e-2


def test_cosine_starts_at_peak_and_ends_at_the_final_fraction():
    sched = learning_rate_schedule(_train(lr_decay="cosine", final_lr_fraction=0.1), 100)
    assert float(sched(0)) == pytest.approx(1e-2)
    assert float(sched(50)) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert float(sched(100)) == pytest.approx(1e-3)


def test_cosine_after_warmup():
    sched = learning_rate_schedule(_train(lr_decay="cosine", warmup_steps=10), 110)
    assert float(sched(5)) == pytest.approx(5e-3)
    assert float(sched(10)) == pytest.approx(1e-2)
    assert float(sched(110)) == pytest.approx(1e-3)


def test_decay_needs_the_run_length():
    with pytest.raises(ValueError, match="total number of steps"):
        make_optimizer(_train(lr_decay="cosine"))


def test_new_keys_at_their_defaults_keep_run_ids():
    c = default_config()
    before = run_id(c)
    c.train.lr_decay = "cosine"
    assert run_id(c) != before
    c.train.lr_decay = "constant"
    assert run_id(c) == before
