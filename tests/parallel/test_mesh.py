"""Mesh construction from sizes and configs, and the errors for sizes that do not fit."""

from __future__ import annotations

import jax
import pytest

from scaling_rec.errors import ConfigError, MeshError
from scaling_rec.parallel.mesh import MESH_AXES, check_batch_divisible, make_mesh, make_mesh_from_config


def test_one_device_mesh_in_process():
    mesh = make_mesh(-1, 1, 1)
    assert mesh.axis_names == MESH_AXES
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}


def test_mismatch_raises_before_compute():
    with pytest.raises(MeshError, match=r"needs 2 devices but 1 are available.*-1") as info:
        make_mesh(2, 1, 1)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(MeshError, match="positive int"):
        make_mesh(0, 1, 1)


def test_eight_devices_from_config(eight_devices):
    mesh = eight_devices["mesh"]
    assert mesh["device_count"] == 8
    assert mesh["from_config"] == {"data": 2, "fsdp": 2, "tensor": 2}  # data=-1 took the rest
    assert mesh["from_dict_default"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert mesh["tensor_rest"] == {"data": 1, "fsdp": 2, "tensor": 4}


def test_eight_device_errors_say_sizes_devices_and_fix(eight_devices):
    mesh = eight_devices["mesh"]
    assert "data=3, fsdp=1, tensor=1" in mesh["mismatch"] and "8 are available" in mesh["mismatch"]
    assert "-1" in mesh["mismatch"]
    assert "does not divide the 8 devices" in mesh["rest_not_dividing"]
    assert "at most one may be -1" in mesh["two_rests"]


def test_batch_divisibility(eight_devices):
    message = eight_devices["mesh"]["batch_bad"]
    assert "train.batch_size=12" in message and "data-parallel size 8" in message
    assert eight_devices["mesh"]["batch_ok"] is None
    check_batch_divisible(5, make_mesh_from_config({}))  # 1 device: anything goes
    with pytest.raises(MeshError, match="train.batch_size"):
        check_batch_divisible(0, make_mesh_from_config({}))


def test_uneven_parameters(eight_devices):
    mesh = eight_devices["mesh"]
    assert "['embedding'] of shape (1004, 8)" in mesh["strict_uneven"] and "Pad" in mesh["strict_uneven"]
    assert mesh["lenient_uneven_spec"] == "P('fsdp', None)"  # 1004 rows split 4 ways, not 8
