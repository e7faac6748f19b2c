"""The CTR trainer on 8 devices (8-way FSDP) reaches the 1-device numbers.

`scaling_rec.train.ctr_loop.train_and_evaluate` runs Wukong and DLRM for a few steps (dropout, batch
norm, embedding L2, an evaluation every 3 steps) in two child processes: 8 forced host CPU devices with
mesh fsdp=8, and 1 device. The embedding table's 164 used rows are padded to 192 so that they split 8
ways (24 rows per device); batches are placed with `place_batch`, optimiser moments like their
parameters. f32; per-step losses and eval metrics agree to rtol 1e-5 (observed <= 2e-7; different
reduction orders). Exact agreement of the eval metrics needs the models to have no parameter whose
gradient is zero up to rounding (a bias in front of batch norm): Adam turns such rounding noise into
+-lr steps with device-count-dependent signs, which training loss hides and the running means do not.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.parallel import _child_common as common

HERE = common.pathlib.Path(__file__).resolve().parent
FAMILIES = ("wukong", "dlrm")  # DCNv2 shares the MLP and table; its one-step parity is in tests/parallel
RTOL = 1e-5


def _start(workdir, fsdp: int, devices: int, cache):
    return common.subprocess.Popen(
        [common.sys.executable, str(HERE / "_child_ctr_train.py"), str(workdir), str(fsdp), ",".join(FAMILIES)],
        env=common.env(devices, cache), cwd=common.REPO, stdout=common.subprocess.PIPE,
        stderr=common.subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("ctr_multidevice")
    cache = tmp_path_factory.getbasetemp() / "ctr_jax_cache"
    eight, one = common.finish([_start(base / "fsdp8", 8, 8, cache), _start(base / "one", 1, 1, cache)])
    assert "error" not in eight and "error" not in one, (eight, one)
    return {"eight": eight, "one": one}


def test_device_counts_and_padded_table_split_evenly(runs):
    assert runs["eight"]["device_count"] == 8 and runs["one"]["device_count"] == 1
    for family in FAMILIES:
        assert runs["eight"]["families"][family]["table_shard"] == [24, 8]  # 192 padded rows / 8
        assert runs["one"]["families"][family]["table_shard"] == [192, 8]
        assert runs["eight"]["families"][family]["result"]["n_emb"] == 164 * 8  # padding not counted


@pytest.mark.parametrize("family", FAMILIES)
def test_fsdp8_reaches_the_one_device_losses_and_metrics(runs, family):
    got, want = runs["eight"]["families"][family], runs["one"]["families"][family]
    assert got["result"]["status"] == want["result"]["status"] == "ok"
    assert got["result"]["num_devices"] == 8
    steps = sorted(want["losses"], key=int)
    assert steps == [str(s) for s in range(1, 7)] and sorted(got["losses"], key=int) == steps
    np.testing.assert_allclose([got["losses"][s] for s in steps], [want["losses"][s] for s in steps], rtol=RTOL)
    keys = sorted(want["result"]["eval"])
    assert sorted(got["result"]["eval"]) == keys and "test/auc" in keys
    np.testing.assert_allclose([got["result"]["eval"][k] for k in keys], [want["result"]["eval"][k] for k in keys],
                               rtol=RTOL)
