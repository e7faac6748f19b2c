"""A checkpoint written by an 8-device run (8-way FSDP: every parameter and moment split in eighths)
restores on 1 device through orbax resharding and continues to the same losses as the uninterrupted run.

Both runs are one tiny HSTU config with mesh.fsdp = -1, so the same run_id fits 8 devices and 1; the
second `train_and_evaluate` call, in a 1-device process, finds the step-2 checkpoint in the same workdir.
f32; losses agree to rtol 1e-5 (different reduction orders on 8 devices and on 1).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from scaling_rec.config import run_id
from tests.parallel import _child_common as common

RTOL = 1e-5
STOP_AFTER = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Uninterrupted 8-device run; 8-device run stopped after 2 steps; its continuation on 1 device."""
    base = tmp_path_factory.getbasetemp()
    cache, workdir = base / "parallel_jax_cache", base / "reshard_8_to_1"
    reference, stopped = common.finish([
        common.start("_child_train.py", [str(base / "reference_8dev"), "hstu"], common.env(8, cache)),
        common.start("_child_train.py", [str(workdir), "hstu", str(STOP_AFTER)], common.env(8, cache)),
    ])
    assert "error" not in reference and "error" not in stopped, (reference, stopped)
    run_dir = common.find_run_dir(workdir, run_id(common.tiny_config("hstu")))
    sharding_file = run_dir / "ckpt" / str(STOP_AFTER) / "state" / "_sharding"
    saved = {base64.b64decode(k).decode(): json.loads(v) for k, v in json.loads(sharding_file.read_text()).items()}
    (resumed,) = common.finish([common.start("_child_train.py", [str(workdir), "hstu"], common.env(1, cache))])
    assert "error" not in resumed, resumed
    return {"reference": reference, "stopped": stopped, "resumed": resumed, "saved_shardings": saved}


def test_checkpoint_was_written_fsdp_sharded_over_8_devices(runs):
    assert runs["stopped"]["device_count"] == 8
    assert runs["stopped"]["result"] == {"status": "interrupted", "run_id": runs["stopped"]["result"]["run_id"],
                                         "step": STOP_AFTER}
    table = next(v for k, v in runs["saved_shardings"].items() if k.endswith("params.items.table.value"))
    assert table["shape"] == [1, 8, 1] and table["partition_spec"] == [["fsdp", "tensor"], None]


def test_restores_on_one_device_and_continues_to_the_same_losses(runs):
    reference, resumed = runs["reference"], runs["resumed"]
    assert resumed["device_count"] == 1
    assert resumed["result"]["status"] == "ok" and resumed["result"]["num_devices"] == 1
    assert resumed["result"]["steps"] == common.NUM_STEPS
    steps = [str(s) for s in range(1, common.NUM_STEPS + 1)]
    assert sorted(resumed["losses"], key=int) == steps  # steps 1-2 from the 8-device part, 3-4 on 1 device
    np.testing.assert_allclose([resumed["losses"][s] for s in steps], [reference["losses"][s] for s in steps],
                               rtol=RTOL, err_msg="per-step loss, 8 devices -> checkpoint -> 1 device vs uninterrupted")
    np.testing.assert_allclose(resumed["result"]["final_train_loss"], reference["result"]["final_train_loss"],
                               rtol=RTOL)
    got, want = resumed["result"]["eval"], reference["result"]["eval"]
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[k] for k in sorted(want)], [want[k] for k in sorted(want)], rtol=RTOL)
