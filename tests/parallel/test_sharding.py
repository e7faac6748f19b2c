"""Parameters born sharded on 8 host devices, and loss/gradients equal to one device's."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from scaling_rec.parallel.sharding import logical_axes_of
from tests.parallel._toy import make_toy

TABLE = "['table']['embedding'].value"
UP = "['up']['kernel'].value"
UP_BIAS = "['up']['bias'].value"
DOWN_BIAS = "['down']['bias'].value"

# Per-device shard shapes: table (1000, 64) ('vocab', 'embed'); up (64, 128) ('embed', 'mlp').
EXPECTED = {
    "data8": {TABLE: [1000, 64], UP: [64, 128], UP_BIAS: [128], DOWN_BIAS: [64]},
    "fsdp8": {TABLE: [125, 64], UP: [8, 128], UP_BIAS: [128], DOWN_BIAS: [8]},
    "d2f2t2": {TABLE: [250, 64], UP: [32, 64], UP_BIAS: [64], DOWN_BIAS: [32]},
}


def test_metadata_spelling_in_this_flax():
    with nnx.use_eager_sharding(False):
        model = make_toy()
    assert logical_axes_of(model.table.embedding) == ("vocab", "embed")
    assert logical_axes_of(model.up.kernel) == ("embed", "mlp")


@pytest.mark.parametrize("mesh_name", sorted(EXPECTED))
def test_shard_shapes(eight_devices, mesh_name):
    model = eight_devices["models"][mesh_name]
    for name, shape in EXPECTED[mesh_name].items():
        assert model["shard_shapes"][name] == shape, (mesh_name, name, model["param_specs"][name])
        assert model["grad_shard_shapes"][name] == shape, (mesh_name, name)
    assert set(model["num_shards"].values()) == {8}
    assert model["batch_spec"] == "P(('data', 'fsdp'),)"


@pytest.mark.parametrize("mesh_name", sorted(EXPECTED))
def test_loss_and_grads_match_one_device(eight_devices, mesh_name):
    ref_loss = eight_devices["models"]["ref"]["loss"]
    np.testing.assert_allclose(eight_devices["models"][mesh_name]["loss"], ref_loss, rtol=1e-5)
    ref, got = eight_devices["grads"]["ref"], eight_devices["grads"][mesh_name]
    assert sorted(got) == sorted(ref)
    for name in ref:
        scale = np.abs(ref[name]).max()
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_big_table_is_one_eighth_per_device(eight_devices):
    big = eight_devices["big_table"]
    assert big["shard_shape"] == [1_250_000, 64]
    assert big["per_device_bytes"] * 8 == big["total_bytes"] == 10_000_000 * 64 * 4
    # The compiled initialiser writes only its shard, and never holds a whole table.
    assert big["compiled_output_bytes"] == big["per_device_bytes"]
    assert big["compiled_output_bytes"] + big["compiled_temp_bytes"] < big["total_bytes"]


def test_shard_batch_and_activation_constraints(eight_devices):
    batch = eight_devices["batch"]
    assert batch["tokens_spec"] == "P(('data', 'fsdp'),)" and batch["tokens_shard_shape"] == [16]
    assert batch["offsets_spec"] == "P()"  # [B+1] does not split evenly: replicated
    assert batch["num_sequences"] == 8
    assert batch["constrained_spec"] == "P(('data', 'fsdp'), 'tensor')"
    assert batch["outside_is_noop"]
