"""TIGER's real train step (`scaling_rec.train.tiger_loop.make_train_step`, both architectures) under meshes
(data=8), (fsdp=8), (data=2, fsdp=2, tensor=2) on 8 host CPU devices gives the loss and gradients of one
device, with its parameters split as the rules say and its batch split as the loop's `place_batch` does.

A tiny model (d_model 32, one layer per stack, dropout 0.1 keyed by the step) on 16 (history, next item)
pairs of synthetic sequences with random semantic IDs; no real data is read. The shared token table
('vocab', 'embed') has 48 used rows padded to 64 (tests/parallel/_child_common.tiny_tiger_config), split over
('fsdp', 'tensor').
Tolerances of test_models_sharded: loss rtol 1e-6; every gradient tensor
|g - g_1dev| <= 1e-5 * max|g_1dev| + 1e-6 * G, G = the largest gradient entry of the model.
Config errors (mesh vs devices, batch vs data-parallel size) are raised by `train_and_evaluate` before any
compilation and before the run directory exists. A whole run (4 steps in calls of 2, validation, the best
checkpoint restored and tested, beam-search test) on data=2 x fsdp=2 x tensor=2 equals the same run on one
device to rtol 1e-5: learning curve, final loss, the best step's and the last step's test metrics (33 users).
"""

from __future__ import annotations

import numpy as np
import pytest

from scaling_rec.errors import ConfigError
from scaling_rec.train.tiger_loop import train_and_evaluate
from tests.parallel import _child_common as common
from tests.parallel._child_tiger import loop_config

ARCHS = ("encdec", "deconly")
MESHES = ("data8", "fsdp8", "d2f2t2")
TABLE = "['embed']['table'].value"
FFN_IN = "['decoder'][0]['ffn']['wi']['kernel'].value"  # ('embed', 'mlp') [32, 64]
SHARDS = {  # per-device shard of the token table (48 used rows padded to [64, 32]) and of a decoder FFN weight
    TABLE: {"ref": [64, 32], "data8": [64, 32], "fsdp8": [8, 32], "d2f2t2": [16, 32]},
    FFN_IN: {"ref": [32, 64], "data8": [32, 64], "fsdp8": [4, 64], "d2f2t2": [16, 32]},
}
SPECS = {TABLE: "P(('fsdp', 'tensor'), None)", FFN_IN: "P('fsdp', 'tensor')"}


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{'encdec' | 'deconly': results per mesh with gradients, 'errors': the config errors}, from two 8-device
    children run side by side."""
    out = tmp_path_factory.mktemp("tiger_sharded")
    env = common.env(8, tmp_path_factory.getbasetemp() / "parallel_jax_cache")
    procs = [common.start("_child_tiger.py", [str(out), *whats], env)
             for whats in (["encdec", "loop"], ["deconly", "errors"])]
    results: dict = {}
    for result in common.finish(procs):
        assert "error" not in result, f"8-device child failed: {result['error']}\n{result.get('stderr', '')}"
        results.update(result)
    for arch in ARCHS:
        for mesh in ("ref", *MESHES):
            results[arch]["meshes"][mesh]["grads"] = dict(np.load(out / f"grads_{arch}_{mesh}.npz"))
    return results


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mesh", MESHES)
def test_loss_and_gradients_equal_one_device(child, arch, mesh):
    common.assert_step_matches_one_device(child[arch]["meshes"]["ref"], child[arch]["meshes"][mesh], TABLE,
                                          f"{arch} {mesh}")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mesh", ("ref", *MESHES))
def test_token_table_rows_split_as_the_rules_say(child, arch, mesh):
    run = child[arch]["meshes"][mesh]
    for name, shards in SHARDS.items():
        assert run["specs"][name] == SPECS[name], (arch, mesh, name)
        # the buffers the devices hold, for the parameter and for its gradient
        assert run["param_shards"][name] == [shards[mesh]], (arch, mesh, name)
        assert run["grad_shards"][name] == [shards[mesh]], (arch, mesh, name)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_placement(child, arch):
    for mesh in MESHES:
        run = child[arch]["meshes"][mesh]
        # history [B, S] and targets [B]: the example axis over the data-parallel axes
        assert run["batch_specs"] == {"history_BxS": "P(('data', 'fsdp'),)", "targets_B": "P(('data', 'fsdp'),)"}
        assert run["batch_rows"] == 16
        assert run["placed_like_shard_batch"]  # one process: place_batch == shard_batch


def test_clear_errors_before_any_compute(child):
    common.assert_clear_config_errors(child["errors"])


def test_mesh_mismatch_on_one_device(tmp_path):
    config = common.tiny_tiger_config()
    config.mesh.fsdp = 2
    with pytest.raises(ConfigError, match="= 2 devices, but 1 are available"):
        train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "runs").exists()


def test_whole_run_equals_one_device(child, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_REC_CACHE", str(tmp_path / "cache"))
    ref = train_and_evaluate(loop_config(tmp_path / "data"), tmp_path / "run")
    sharded = child["loop"]
    assert sharded["num_devices"] == 8 and sharded["status"] == ref["status"] == "ok" and sharded["steps"] == 4
    np.testing.assert_allclose(sharded["final_train_loss"], ref["final_train_loss"], rtol=1e-5)
    assert [p["step"] for p in sharded["curve"]] == [p["step"] for p in ref["curve"]] == [2, 4]
    for a, b in zip(ref["curve"], sharded["curve"], strict=True):
        for k in a:
            if k.startswith("valid/"):
                np.testing.assert_allclose(b[k], a[k], rtol=1e-5, err_msg=k)
    assert sharded["best"]["step"] == ref["best"]["step"] == 2  # so best/ is restored onto the mesh and tested
    for k, v in ref["best"]["test"].items():
        np.testing.assert_allclose(sharded["best"]["test"][k], v, rtol=1e-5, err_msg=k)
    for k, v in ref["eval"].items():
        np.testing.assert_allclose(sharded["eval"][k], v, rtol=1e-5, err_msg=k)
