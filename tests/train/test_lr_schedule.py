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


def test_cosine_starts_at_peak_and_ends_at_the_final_fraction_on_the_last_step():
    """The run's last step (count total - 1) is at final_lr_fraction: the cosine reached it one step after
    the run ended (0.118x at 11 steps, the known-answer study's shortest runs)."""
    sched = learning_rate_schedule(_train(lr_decay="cosine", final_lr_fraction=0.1), 101)
    assert float(sched(0)) == pytest.approx(1e-2)
    assert float(sched(50)) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert float(sched(100)) == pytest.approx(1e-3)
    assert float(learning_rate_schedule(_train(lr_decay="cosine", final_lr_fraction=0.1), 11)(10)) == (
        pytest.approx(1e-3))


def test_warmup_counts_from_one_so_the_first_step_moves():
    """Step i of a W-step warm-up takes lr (i + 1) / W (TIGER's convention): lr 0 at the first step made it a
    step that cost FLOPs and examples and changed nothing."""
    for decay, total in (("constant", 100), ("cosine", 110)):
        sched = learning_rate_schedule(_train(lr_decay=decay, warmup_steps=10), total)
        assert [float(sched(i)) for i in (0, 4, 9)] == pytest.approx([1e-3, 5e-3, 1e-2])


def test_cosine_after_warmup():
    sched = learning_rate_schedule(_train(lr_decay="cosine", warmup_steps=10), 111)
    assert float(sched(10)) == pytest.approx(1e-2)
    assert float(sched(60)) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    assert float(sched(110)) == pytest.approx(1e-3)


def test_a_warmup_that_leaves_no_cosine_is_an_error():
    """It was cut to total - 1 steps: the run ended at the peak rate, with no decay and no word."""
    with pytest.raises(ValueError, match="warmup_steps=10 leaves 1 of the run's 11 steps"):
        learning_rate_schedule(_train(lr_decay="cosine", warmup_steps=10), 11)
    learning_rate_schedule(_train(lr_decay="cosine", warmup_steps=10), 12)


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
