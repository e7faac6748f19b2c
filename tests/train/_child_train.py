"""Child process for the kill-and-resume tests: trains the tiny config in argv[1], slowly (streamed from the
prepared directory argv[2] when given: tests/train/test_streamed.py)."""

from __future__ import annotations

import sys
import time

from scaling_rec.train import engine
from scaling_rec.train.loop import train_and_evaluate
from tests.train._tiny import tiny_config

_make = engine.make_train_step


def _slow_make(*args, **kwargs):
    fn = _make(*args, **kwargs)

    def slow(state, batch):
        time.sleep(0.15)  # leaves the parent time to kill us between checkpoints
        return fn(state, batch)

    return slow


if __name__ == "__main__":
    engine.make_train_step = _slow_make
    if len(sys.argv) > 2:
        from tests.train.test_streamed import streamed_config

        train_and_evaluate(streamed_config(sys.argv[2]), sys.argv[1])
    else:
        train_and_evaluate(tiny_config(), sys.argv[1])
