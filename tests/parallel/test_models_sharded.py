"""Every model's real train step under meshes (data=8), (fsdp=8), (data=2, fsdp=2, tensor=2) on 8 host CPU
devices gives the loss and gradients of one device, with its parameters split as the rules say.

Sequence models (HSTU, SASRec): the loop's `make_train_step` (sampled softmax, dropout and negatives
keyed by the step) on a jagged batch of the synthetic data, placed by the loop's `place_batch` (token
arrays split over ('data', 'fsdp'), offsets [B+1] replicated). CTR models (Wukong, DLRM, DCNv2, when
present): `scaling_rec.train.ctr_loop.make_steps` (BCE, dropout, BatchNorm over the global batch) on a
[B, F] batch. The optimiser stores the gradients in its state, so they are exactly the step's.
f32 tolerances: loss rtol 1e-6; every gradient tensor |g - g_1dev| <= 1e-5 * max|g_1dev| + 1e-6 * G,
G = the largest gradient entry of the model (observed <= 1.5e-6 of the tensor's max; the G term covers
tensors whose gradient is analytically zero, SASRec's key bias and biases in front of BatchNorm,
where cancellation leaves float noise up to ~5e-7 G).
Config errors (mesh vs devices, batch vs data-parallel size) are raised by `train_and_evaluate` before
any compilation and before the run directory exists.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling_rec.errors import ConfigError
from scaling_rec.families import CTR_FAMILIES, SEQUENCE_FAMILIES
from scaling_rec.train.loop import train_and_evaluate
from tests.parallel import _child_common as common

MESHES = ("data8", "fsdp8", "d2f2t2")
# A new CTR family (a module of scaling_rec/models/ctr/) is tested as it lands.
FAMILIES = [*SEQUENCE_FAMILIES, *CTR_FAMILIES]
SEQ_TABLE, CTR_TABLE = "['items']['table'].value", "['embedding']['table']['table'].value"
# (embedding table, largest dense weight) of each family; a CTR family not listed: its table, and the
# largest 2-D weight the child finds, of the shape every CTR family's tiny top MLP has. Tables ('vocab',
# 'embed'): rows over ('fsdp', 'tensor'); sequence tables [128, 32] (rows padded to 64s), the CTR table
# [64, 8]. Largest dense weights ('embed', 'mlp'): rows over 'fsdp', columns over 'tensor'.
PARAMS = {
    "hstu": (SEQ_TABLE, "['blocks'][0]['uvqk'].value"),
    "sasrec": (SEQ_TABLE, "['blocks'][0]['ffn_in']['kernel'].value"),
    "wukong": (CTR_TABLE, "['top']['layers'][0]['kernel'].value"),
    "dlrm": (CTR_TABLE, "['top']['layers'][1]['kernel'].value"),
    "dcnv2": (CTR_TABLE, "['deep']['layers'][1]['kernel'].value"),
    "rankmixer": (CTR_TABLE, "['head']['layers'][1]['kernel'].value"),
}
CTR_DENSE_SHARDS = {"ref": [64, 64], "data8": [64, 64], "fsdp8": [8, 64], "d2f2t2": [32, 32]}
DENSE_SHARDS = {  # per-device shard of the largest dense weight
    "hstu": {"ref": [32, 128], "data8": [32, 128], "fsdp8": [4, 128], "d2f2t2": [16, 64]},
    "sasrec": {"ref": [32, 64], "data8": [32, 64], "fsdp8": [4, 64], "d2f2t2": [16, 32]},
    **{f: CTR_DENSE_SHARDS for f in CTR_FAMILIES},
}
TABLE_SHARDS = {  # per-device shard of the embedding table
    "seq": {"ref": [128, 32], "data8": [128, 32], "fsdp8": [16, 32], "d2f2t2": [32, 32]},
    "ctr": {"ref": [64, 8], "data8": [64, 8], "fsdp8": [8, 8], "d2f2t2": [16, 8]},
}


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory):
    """child(what) -> the 8-device child's results for a family (with gradients) or 'errors'; run once each."""
    out = tmp_path_factory.mktemp("models_sharded")
    cache = tmp_path_factory.getbasetemp() / "parallel_jax_cache"
    done: dict[str, dict] = {}

    def get(what: str) -> dict:
        if what not in done:
            proc = common.start("_child_models.py", [str(out), what], common.env(8, cache))
            _, err = proc.communicate(timeout=common.CHILD_TIMEOUT_S)
            assert proc.returncode == 0, f"8-device child ({what}) failed:\n{err[-4000:]}"
            done[what] = json.loads((out / f"{what}.json").read_text())
            if what != "errors":
                for mesh in ("ref", *MESHES):
                    done[what]["meshes"][mesh]["grads"] = dict(np.load(out / f"grads_{what}_{mesh}.npz"))
        return done[what]

    return get


def _params(family: str, run: dict) -> tuple[str, str]:
    """(table, largest dense weight) expected of `family`: pinned above, else the CTR table and the child's pick."""
    return PARAMS.get(family, (CTR_TABLE, run["largest_dense"]))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", MESHES)
def test_loss_and_gradients_equal_one_device(child, family, mesh):
    runs = child(family)["meshes"]
    common.assert_step_matches_one_device(runs["ref"], runs[mesh], _params(family, runs["ref"])[0], f"{family} {mesh}")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", ("ref", *MESHES))
def test_item_table_and_largest_dense_weight_shards(child, family, mesh):
    run = child(family)["meshes"][mesh]
    table, largest = _params(family, run)
    assert (run["table"], run["largest_dense"]) == (table, largest)
    table_shard = TABLE_SHARDS["seq" if table == SEQ_TABLE else "ctr"][mesh]
    for name, expected in ((table, table_shard), (largest, DENSE_SHARDS[family][mesh])):
        # the buffers the devices hold, for the parameter and for its gradient
        assert run["param_shards"][name] == [expected], (family, mesh, name, run["specs"][name])
        assert run["grad_shards"][name] == [expected], (family, mesh, name)
    assert run["specs"][table] == "P(('fsdp', 'tensor'), None)"
    assert run["specs"][largest] == "P('fsdp', 'tensor')"


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_placement(child, family):
    for mesh in MESHES:
        run = child(family)["meshes"][mesh]
        # jagged tokens [T] or CTR examples [B, F]: leading axis over the data-parallel axes
        assert run["batch_spec"] == "P(('data', 'fsdp'),)" and run["batch_rows"] % 8 == 0
        if family in SEQUENCE_FAMILIES:
            assert run["offsets_spec"] == "P()"  # [B+1] does not split: replicated
        assert run["placed_like_shard_batch"]  # one process: place_batch == shard_batch


def test_clear_errors_before_any_compute(child):
    common.assert_clear_config_errors(child("errors"))


def test_mesh_mismatch_on_one_device(tmp_path):
    config = common.tiny_config("hstu")
    config.mesh.fsdp = 2
    with pytest.raises(ConfigError, match="= 2 devices, but 1 are available"):
        train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "runs").exists()
