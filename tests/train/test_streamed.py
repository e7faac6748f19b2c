"""The training loop on a prepared directory (launch/prepare.py): it streams, and ends with the numbers of
the in-memory path over the same log; a killed streamed run resumes exactly; evaluation sees every user
once."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scaling_rec.config import run_id
from scaling_rec.data import events, prepared
from scaling_rec.data.pipeline import eval_batches
from scaling_rec.data.splits import leave_one_out
from scaling_rec.data.stream import PreparedEvalExamples, PreparedExamples
from scaling_rec.errors import ConfigError
from scaling_rec.train import inputs as inputs_lib
from scaling_rec.train.examples import eval_examples, time_origin
from scaling_rec.train.loop import train_and_evaluate
from tests._jax_cache import child_env
from tests.data.test_events_prepared import COLS, write_log
from tests.data.test_events_stream import batch_digest
from tests.train._tiny import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
_SAME = ("final_train_loss", "eval", "final_eval_loss", "examples_seen", "tokens_seen", "flops_spent", "steps",
         "total_steps", "unique_examples", "num_items", "dropped_users", "epochs", "best_step")


@pytest.fixture(scope="module")
def log_and_prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("streamed")
    log = write_log(d / "log.csv", n=3000)
    prepared.prepare(log, d / "prepared", COLS, num_shards=3, chunk_bytes=4096, write=lambda line: None)
    return log, d / "prepared"


def streamed_config(path: pathlib.Path | str, layout: str = "jagged", **train: float):
    c = tiny_config(**train)
    c.study = "streamed"
    c.data.name, c.data.path, c.data.layout = "events", str(path), layout
    c.data.columns = dataclasses.asdict(COLS)
    c.data.max_len = 8
    c.train.batch_size = 16
    return c


@pytest.mark.parametrize("layout", ["jagged", pytest.param("padded", marks=pytest.mark.slow)])
def test_a_prepared_directory_trains_like_its_log_in_memory(log_and_prepared, tmp_path, layout):
    log, out = log_and_prepared
    assert not inputs_lib.streamed(streamed_config(log)) and inputs_lib.streamed(streamed_config(out))
    streamed = inputs_lib.prepare(streamed_config(out, layout))
    assert isinstance(streamed.train, PreparedExamples) and isinstance(streamed.valid, PreparedEvalExamples)
    short = {"num_steps": 6, "eval_every": 3, "checkpoint_every": 0}
    memory = train_and_evaluate(streamed_config(log, layout, **short), tmp_path)
    ours = train_and_evaluate(streamed_config(out, layout, **short), tmp_path)
    assert ours["run_id"] != memory["run_id"] and ours["status"] == memory["status"] == "ok"
    assert {k: ours[k] for k in _SAME} == {k: memory[k] for k in _SAME}


def test_streamed_evaluation_sees_every_user_once_as_in_memory(log_and_prepared):
    log, out = log_and_prepared
    seq = events.load_events(log, COLS)
    split = leave_one_out(seq)
    data = prepared.PreparedData.open(out)
    spec = inputs_lib.prepare(streamed_config(out)).eval_spec
    for which, max_users, pick in (("valid", 0, "sample"), ("test", 0, "sample"), ("test", 17, "sample"),
                                   ("valid", 17, "first")):
        ours = PreparedEvalExamples(data, 8, which, max_users, pick)
        ref = eval_examples(getattr(split, which), 8, max_users, pick)
        np.testing.assert_array_equal(data.lengths[ours.users] >= 3, True)
        assert len(ours) == len(ref) == (max_users or split.valid.num_users)
        a = [batch_digest(b) for b in eval_batches(ours, spec, data.time_origin)]
        b = [batch_digest(b) for b in eval_batches(ref, spec, time_origin(seq))]
        assert a == b


@pytest.mark.slow  # two tiny runs: about 70 s on the loaded 2-core CPU
def test_a_subset_of_training_users_is_the_in_memory_one(log_and_prepared, tmp_path):
    log, out = log_and_prepared
    results = []
    for path in (log, out):
        c = streamed_config(path, num_steps=6, eval_every=6, checkpoint_every=0)
        c.data.train_user_fraction = 0.5
        results.append(train_and_evaluate(c, tmp_path))
    assert results[0]["unique_examples"] == results[1]["unique_examples"] < len(
        PreparedExamples(prepared.PreparedData.open(out), 8))
    assert {k: results[0][k] for k in _SAME} == {k: results[1][k] for k in _SAME}


def test_in_memory_filters_on_a_prepared_directory_name_the_fix(log_and_prepared, tmp_path):
    _, out = log_and_prepared
    for key, value in (("dedup", True), ("kcore", 2)):
        c = streamed_config(out)
        c.data[key] = value
        with pytest.raises(ConfigError, match=f"data.{key}=.*filter the log before preparing it"):
            train_and_evaluate(c, tmp_path)


@pytest.mark.slow  # three tiny runs, one killed: about 110 s on the loaded 2-core CPU (the stream's own SIGKILL
# test, tests/data/test_events_stream.py, is not slow)
def test_a_streamed_run_killed_with_sigkill_resumes_exactly(log_and_prepared, tmp_path, package_jax_cache):
    _, out = log_and_prepared
    ref = train_and_evaluate(streamed_config(out), tmp_path / "ref")
    per_epoch = inputs_lib.prepare(streamed_config(out)).train_stream(0).batches_per_epoch(0)
    assert per_epoch > 8, "the kill lands mid-epoch"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **child_env(package_jax_cache)}
    child = subprocess.Popen([sys.executable, str(ROOT / "tests/train/_child_train.py"), str(tmp_path / "w"),
                              str(out)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "w" / "runs" / run_id(streamed_config(out)) / "ckpt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            steps = [int(p.name) for p in ckpt_dir.glob("[0-9]*") if p.name.isdigit()] if ckpt_dir.exists() else []
            if steps and max(steps) >= 4:
                break
            if child.poll() is not None:
                pytest.fail("child finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint appeared in time")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not (ckpt_dir.parent / "result.json").exists()
    resumed = train_and_evaluate(streamed_config(out), tmp_path / "w")
    assert {k: resumed[k] for k in _SAME} == {k: ref[k] for k in _SAME}


def test_data_num_items_reserves_ids_and_refuses_fewer_than_the_data(log_and_prepared):
    _, out = log_and_prepared
    c = streamed_config(out)
    items = prepared.PreparedData.open(out).num_items
    c.data.num_items = items + 50
    assert inputs_lib.prepare(c).num_items == items + 50
    assert run_id(c) != run_id(streamed_config(out))
    c.data.num_items = items - 1
    with pytest.raises(ConfigError, match=f"data.num_items={items - 1} is below"):
        inputs_lib.prepare(c)
