"""Streamed training on two processes (localhost, 2 x 2 host CPU devices, gloo): each process reads and
builds only its half of every global batch (scaling_rec.data.stream.ProcessRowsStream), the global batch
is assembled from the halves, and the run's losses and metrics are those of one process with the same
global batch (f32; the all-reduces run in another order, so rtol 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_rec.data import prepared
from scaling_rec.train import inputs as inputs_lib
from scaling_rec.train.loop import train_and_evaluate
from tests.data.test_events_prepared import COLS, write_log
from tests.parallel import _child_common as common
from tests.train.test_streamed import streamed_config

NUM_STEPS = 4
RTOL = 1e-5

pytestmark = pytest.mark.slow  # two processes and the one-process run: about 90 s on the loaded 2-core CPU


def run_config(path, num_steps: int = NUM_STEPS):
    """The tiny streamed run (padded layout, batch 16, data parallel over every device): num_steps steps,
    logged each, evaluated at the end."""
    c = streamed_config(path, "padded", num_steps=num_steps, eval_every=num_steps, checkpoint_every=0, log_every=1)
    c.eval.max_users = 32
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 1, 1
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("streamed_processes")
    log = write_log(base / "log.csv", n=4000)
    prepared.prepare(log, base / "prepared", COLS, num_shards=3, chunk_bytes=4096, write=lambda line: None)
    port = common.free_port()
    pair = [common.start("../train/_child_streamed_process.py", [str(base / "two"), str(base / "prepared"),
                                                                 str(NUM_STEPS)],
                         common.env(2, base / "jax_cache", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                    JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
            for i in range(2)]
    single = train_and_evaluate(run_config(base / "prepared"), base / "one")
    processes = common.finish(pair)
    errors = [r for r in processes if "error" in r]
    if any("gloo" in r["error"].lower() for r in errors):
        pytest.skip(f"gloo CPU collectives unavailable in this jaxlib: {errors[0]['error']}")
    assert not errors, f"a child failed (coordinator 127.0.0.1:{port}): {errors[0]}"
    losses = common.step_losses(common.find_run_dir(base / "one", single["run_id"]))
    return {"processes": processes, "single": single, "single_losses": losses,
            "stream": inputs_lib.prepare(run_config(base / "prepared")).train_stream(0)}


def test_each_process_reads_only_its_half_of_every_global_batch(runs):
    """grain builds batches ahead in threads (at most the rest of the epoch here: the next epoch's starts when
    this one is consumed), so a process has read its half of the trained batches and of some later ones."""
    one = runs["stream"]  # the one-process stream: the global batches
    per = one.spec.batch_size // 2
    epoch = one.plan(0)
    assert len(epoch) > NUM_STEPS + 2
    reads = []
    for pid, r in enumerate(runs["processes"]):
        assert (r["process_index"], r["process_count"]) == (pid, 2)
        mine = {int(i) for b in epoch for i in b[pid * per:(pid + 1) * per]}
        trained = {int(i) for b in epoch[:NUM_STEPS] for i in b[pid * per:(pid + 1) * per]}
        assert len(r["reads"]) == len(set(r["reads"])), f"process {pid} read an example twice"
        assert trained <= set(r["reads"]) <= mine, f"process {pid} read rows that are not its own"
        reads.append(set(r["reads"]))
    assert not reads[0] & reads[1]
    assert reads[0] | reads[1] >= {int(i) for b in epoch[:NUM_STEPS] for i in b}


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    single, want = runs["single"], runs["single_losses"]
    assert sorted(want) == list(range(1, NUM_STEPS + 1))
    for r in runs["processes"]:
        got = r["result"]
        assert got["status"] == single["status"] == "ok" and got["run_id"] == single["run_id"]
        assert got["steps"] == single["steps"] == NUM_STEPS and got["examples_seen"] == single["examples_seen"]
        np.testing.assert_allclose(got["final_train_loss"], single["final_train_loss"], rtol=RTOL)
        assert sorted(got["eval"]) == sorted(single["eval"])
        np.testing.assert_allclose([got["eval"][k] for k in sorted(single["eval"])],
                                   [single["eval"][k] for k in sorted(single["eval"])], rtol=RTOL)
    losses = {int(s): v for s, v in runs["processes"][0]["losses"].items()}  # JSON keys are strings
    assert sorted(losses) == sorted(want)
    np.testing.assert_allclose([losses[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=RTOL,
                               err_msg="per-step train loss, 2 processes vs 1 process")
