"""Child process of test_kill_resume.py: trains family argv[1]'s golden tiny run in workdir argv[2], each step
slowed down so that the parent can SIGKILL it between its first checkpoint and its end."""

from __future__ import annotations

import pathlib
import sys
import time

from scaling_rec.train import engine
from tests.golden.runs import record

_make = engine.make_train_step


def _slow_make(*args, **kwargs):
    fn = _make(*args, **kwargs)

    def slow(state, batch):
        time.sleep(0.2)
        return fn(state, batch)

    return slow


if __name__ == "__main__":
    engine.make_train_step = _slow_make
    record(sys.argv[1], pathlib.Path(sys.argv[2]))
