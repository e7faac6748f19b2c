"""Child of tests/ctr/test_multidevice.py: `ctr_loop.train_and_evaluate` of a tiny synthetic CTR run per family.

Usage: python _child_ctr_train.py WORKDIR FSDP FAMILY[,FAMILY...]
The parent sets XLA_FLAGS (forced host CPU devices). Prints one line `RESULT {json}`: per family the run's
result, the loss of every step from metrics.jsonl, and the per-device shard shape of the embedding table.
"""

from __future__ import annotations

import json
import pathlib
import sys
import traceback

import jax
import ml_collections
from flax import nnx

from scaling_rec import ctr_config
from scaling_rec.data.ctr import load_ctr
from scaling_rec.models.registry import build_ctr_model
from scaling_rec.parallel.mesh import make_mesh_from_config
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import abstract_state
from scaling_rec.train.ctr_loop import train_and_evaluate

NUM_STEPS, EVAL_EVERY = 6, 3
# 51 + 41 + 31 + 21 + 11 + 9 = 164 table rows with each field's OOV row: not a multiple of 8, so the
# table splits 8 ways only after padding to 192 rows.
CARDINALITIES = (50, 40, 30, 20, 10, 8)


def tiny_config(family: str, fsdp: int) -> ml_collections.ConfigDict:
    """A seconds-long synthetic run with dropout and batch norm (both see the global batch)."""
    c = ctr_config.default_config()
    c.study = "ctr_multidevice"
    c.data.name, c.data.synthetic_examples, c.data.synthetic_cardinalities = "synthetic", 1024, CARDINALITIES
    c.model.family, c.model.embed_dim, c.model.dropout = family, 8, 0.2
    c.model.num_layers, c.model.num_fmb, c.model.num_lcb, c.model.fm_rank = 2, 4, 4, 8
    c.model.fmb_width, c.model.fmb_depth, c.model.mlp_width, c.model.mlp_depth = 32, 1, 32, 2
    c.model.cross_layers = 2
    c.train.batch_size, c.train.num_epochs, c.train.num_steps = 64, 0.0, NUM_STEPS
    c.train.eval_every, c.train.log_every, c.train.embedding_l2 = EVAL_EVERY, 1, 0.01
    c.eval.batch_size = 64
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, fsdp, 1
    c.logging.wandb, c.logging.progress = False, False
    return c


def table_shard_shape(config: ml_collections.ConfigDict, data) -> list[int]:
    """Per-device shape of the embedding table on the run's mesh (abstract: nothing is allocated)."""
    def factory() -> nnx.Module:
        return build_ctr_model(config.model, data.vocab_sizes, data.num_dense, nnx.Rngs(params=config.seed))

    _, state = abstract_state(factory, make_mesh_from_config(config), rules_for(config))
    table = state["embedding"]["table"]["table"].get_value()
    return [int(x) for x in table.sharding.shard_shape(table.shape)]


def step_losses(run_dir: pathlib.Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {str(r["step"]): float(r["loss"]) for r in records if "loss" in r}


def main(workdir: str, fsdp: int, families: list[str]) -> dict:
    out = {"device_count": jax.device_count(), "families": {}}
    for family in families:
        config = tiny_config(family, fsdp)
        data = load_ctr(config.data)
        result = train_and_evaluate(config, workdir)
        run_dir = pathlib.Path(workdir) / "runs" / result["run_id"]
        out["families"][family] = {"result": result, "losses": step_losses(run_dir),
                                   "table_shard": table_shard_shape(config, data)}
    return out


if __name__ == "__main__":
    try:
        out = main(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test with it
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    print("RESULT " + json.dumps(out, default=str), flush=True)
