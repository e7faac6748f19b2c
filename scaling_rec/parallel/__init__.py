"""scaling_rec.parallel: device mesh, logical-axis rules, sharded creation, multi-process start-up."""

from scaling_rec.parallel.distributed import maybe_initialize, process_shard
from scaling_rec.parallel.mesh import MESH_AXES, check_batch_divisible, make_mesh, make_mesh_from_config
from scaling_rec.parallel.rules import DEFAULT_RULES, logical_to_spec, named_sharding, rules_for
from scaling_rec.parallel.sharding import (
    abstract_state,
    create_sharded,
    shard_batch,
    state_shardings,
    use_mesh,
    with_logical_axes,
    with_logical_constraint,
)

__all__ = [
    "DEFAULT_RULES",
    "MESH_AXES",
    "abstract_state",
    "check_batch_divisible",
    "create_sharded",
    "logical_to_spec",
    "make_mesh",
    "make_mesh_from_config",
    "maybe_initialize",
    "named_sharding",
    "process_shard",
    "rules_for",
    "shard_batch",
    "state_shardings",
    "use_mesh",
    "with_logical_axes",
    "with_logical_constraint",
]
