"""The logical-axis rules table: names -> PartitionSpecs, config overrides, shape fitting."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from scaling_rec.errors import ConfigError, MeshError
from scaling_rec.parallel.rules import DEFAULT_RULES, fit_spec_to_shape, logical_to_spec, rules_for
from scaling_rec.parallel.sharding import with_logical_constraint

SIZES = {"data": 2, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize(
    ("axes", "spec"),
    [
        (("batch", "seq", "embed"), P(("data", "fsdp"), None, None)),  # fsdp used by batch: dropped
        (("tokens", "embed"), P(("data", "fsdp"), None)),
        (("tokens", "heads", "kv"), P(("data", "fsdp"), "tensor", None)),
        (("vocab", "embed"), P(("fsdp", "tensor"), None)),  # table rows take fsdp and tensor
        (("embed", "mlp"), P("fsdp", "tensor")),
        (("mlp", "embed"), P("tensor", "fsdp")),
        (("embed", "vocab"), P("fsdp", "tensor")),
        ((None, "qkv"), P(None, "tensor")),
        (("tokens", "vocab"), P(("data", "fsdp"), "tensor")),
    ],
)
def test_logical_to_spec(axes, spec):
    assert logical_to_spec(axes, DEFAULT_RULES) == spec


def test_unknown_logical_axis_names_the_table():
    with pytest.raises(ConfigError, match="no sharding rule.*rules.py"):
        logical_to_spec(("embed", "data"), DEFAULT_RULES)  # a mesh axis is not a logical name


def test_embedding_axes_from_config():
    config = ml_collections.ConfigDict({"mesh": {"embedding_axes": ["fsdp"]}})
    assert logical_to_spec(("vocab", "embed"), rules_for(config)) == P("fsdp", None)
    assert logical_to_spec(("vocab", "embed"), rules_for({"mesh": {"embedding_axes": []}})) == P(None, "fsdp")
    assert rules_for(None) == DEFAULT_RULES
    assert rules_for({"mesh": {"embedding_axes": None}}) == DEFAULT_RULES
    assert logical_to_spec(("cross",), rules_for(None, overrides={"cross": "tensor"})) == P("tensor")


def test_bad_embedding_axes_names_the_key():
    with pytest.raises(ConfigError, match="mesh.embedding_axes"):
        rules_for({"mesh": {"embedding_axes": ["model"]}})


def test_fit_drops_axes_that_do_not_divide():
    spec = P(("fsdp", "tensor"), None)
    assert fit_spec_to_shape(spec, (1000, 64), SIZES) == spec
    assert fit_spec_to_shape(spec, (1002, 64), SIZES) == P("fsdp", None)
    assert fit_spec_to_shape(spec, (1001, 64), SIZES) == P(None, None)
    with pytest.raises(MeshError):
        fit_spec_to_shape(P("fsdp", None), (8,), SIZES)


def test_constraint_is_noop_outside_a_mesh_and_checks_rank():
    x = np.ones((4, 3), np.float32)
    assert with_logical_constraint(x, ("batch", "embed")) is x
    with pytest.raises(MeshError, match="one logical name"):
        with_logical_constraint(x, ("batch",))
