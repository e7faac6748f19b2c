"""scaling_rec/data/stream.py: streamed examples and batches equal the in-memory pipeline's, processes'
parts stack to the global batch, and a stream killed with SIGKILL resumes with the same batches."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scaling_rec.data import events, prepared
from scaling_rec.data.pipeline import BatchSpec, TrainStream
from scaling_rec.data.splits import leave_one_out
from scaling_rec.data.stream import PreparedExamples, PreparedStream
from scaling_rec.errors import ConfigError
from scaling_rec.train.examples import time_origin, train_examples
from tests.data.test_events_prepared import COLS, write_log

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_LEN = 6


def batch_digest(batch) -> str:
    h = hashlib.sha256()
    for f in dataclasses.fields(batch):
        h.update(np.ascontiguousarray(getattr(batch, f.name)).tobytes())
    return h.hexdigest()[:16]


def make_stream(prepared_dir, layout: str = "padded", process_index: int = 0, process_count: int = 1):
    data = prepared.PreparedData.open(prepared_dir)
    spec = BatchSpec(layout, 8, MAX_LEN, 32)
    return PreparedStream(PreparedExamples(data, MAX_LEN), spec, seed=3, time_origin=data.time_origin,
                          process_index=process_index, process_count=process_count)


@pytest.fixture(scope="module")
def prepared_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    log = write_log(d / "log.csv", n=2000)
    prepared.prepare(log, d / "out", COLS, num_shards=3, chunk_bytes=4096, write=lambda line: None)
    return log, d / "out"


def _fields_equal(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


@pytest.mark.parametrize("layout", ["jagged", "padded"])
def test_streamed_batches_equal_the_in_memory_pipeline(prepared_log, layout):
    log, out = prepared_log
    seq = events.load_events(log, COLS)
    ref_examples = train_examples(leave_one_out(seq).train, MAX_LEN)
    stream = make_stream(out, layout)
    assert len(stream.examples) == len(ref_examples)
    ref = TrainStream(ref_examples, stream.spec, seed=3, time_origin=time_origin(seq))
    n = len(ref.plan(0)) + 3  # into the second epoch
    for a, b in zip(list(_take(stream.iterate(0), n)), list(_take(ref.iterate(0), n)), strict=True):
        _fields_equal(a, b)


def _take(it, n):
    for _ in range(n):
        yield next(it)


def test_two_processes_read_disjoint_rows_that_stack_to_the_global_batch(prepared_log):
    _, out = prepared_log
    one = make_stream(out)
    parts = [make_stream(out, process_index=i, process_count=2) for i in range(2)]
    steps = len(one.plan(0)) + 2
    for step, (g, p0, p1) in enumerate(zip(*(_take(s.iterate(0), steps) for s in [one, *parts]), strict=True)):
        for f in dataclasses.fields(g):
            if f.name == "num_sequences":
                assert int(p0.num_sequences) + int(p1.num_sequences) == int(g.num_sequences)
                continue
            np.testing.assert_array_equal(np.concatenate([getattr(p0, f.name), getattr(p1, f.name)]),
                                          getattr(g, f.name), err_msg=f"step {step} {f.name}")
        idx = one.plan(0)[step] if step < len(one.plan(0)) else None
        if idx is not None:
            users = [set(one.examples.users[s.local_indices(idx)].tolist()) for s in parts]
            assert not users[0] & users[1] and users[0] | users[1] == set(one.examples.users[idx].tolist())
    with pytest.raises(ConfigError, match="layout='padded'"):
        make_stream(out, "jagged", 0, 2)


def test_a_killed_stream_resumes_with_the_same_batches(prepared_log, tmp_path):
    _, out = prepared_log
    per_epoch = len(make_stream(out).plan(0))
    total = per_epoch + 4
    ref = [f"{s} {batch_digest(b)}" for s, b in enumerate(_take(make_stream(out).iterate(0), total))]
    log = tmp_path / "steps.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "tests/data/_child_stream.py"), str(out), str(log)]
    child = subprocess.Popen([*cmd, "0", str(total)], env=env, cwd=ROOT)
    deadline = time.time() + 120
    try:
        while not (log.exists() and len(log.read_text().splitlines()) >= 3):
            assert child.poll() is None, "child finished before it could be killed"
            assert time.time() < deadline, "the child wrote no steps in time"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    done = [line for line in log.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert 3 <= len(done) < per_epoch, "killed mid-epoch"
    log.write_text("".join(done))
    subprocess.run([*cmd, str(len(done)), str(total)], env=env, cwd=ROOT, check=True)
    assert log.read_text().splitlines() == ref
