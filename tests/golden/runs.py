"""One tiny run per family on synthetic data (CPU, f32), reduced to the numbers a refactor must not move.

`record(family, workdir)` trains the family's tiny config with the family's trainer and returns
{'losses': {step: loss}, 'result': {key: value}}: the logged training losses and every result field
except the ones that depend on the machine or the clock (VOLATILE). tests/golden/test_golden_runs.py
compares it with golden_values.json, which `python -m tests.golden.regenerate` writes.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ml_collections
import numpy as np

from scaling_rec.families import CTR_FAMILIES, SEQUENCE_FAMILIES, TIGER_FAMILIES

# Every family the library has: a new family fails test_golden_runs until its golden values are recorded.
FAMILIES = (*SEQUENCE_FAMILIES, *CTR_FAMILIES, *TIGER_FAMILIES)
STEPS = 6

# Result fields that depend on the machine, the clock or the checkout, never on the numbers; besides
# these, every duration (a key ending in '_s', the units convention) is left out.
VOLATILE = frozenset({
    "seconds", "started_at", "finished_at", "start_time", "end_time", "device_kind", "num_devices",
    "num_processes", "platform", "host", "hostname", "commit", "git_commit", "dirty", "git_dirty", "jax_version",
    "python_version", "provenance", "versions", "machine", "data_provenance",
    "data_files",  # the data's paths (a temporary directory here); its content is pinned by data_identity
})


def _sequence_config(family: str) -> ml_collections.ConfigDict:
    from scaling_rec.config import default_config

    c = default_config()
    c.study = "golden"
    c.data.name = "synthetic"
    c.data.synthetic_users, c.data.synthetic_items, c.data.max_len = 200, 50, 10
    c.model.family = family
    c.model.embed_dim = c.model.qk_dim = c.model.v_dim = c.model.ffn_dim = 8
    c.model.num_heads = 2 if family == "sasrec" else 1
    c.train.update(batch_size=16, num_negatives=8, num_steps=STEPS, log_every=1, eval_every=3, checkpoint_every=3)
    c.eval.batch_size = 64
    c.logging.wandb = c.logging.progress = False
    return c


def _ctr_config(family: str) -> ml_collections.ConfigDict:
    from scaling_rec.ctr_config import default_config
    from scaling_rec.models import ctr

    c = default_config()
    c.study = "golden"
    c.data.name = "synthetic"
    c.data.synthetic_examples = 2000
    c.model.family = family
    c.model.update(embed_dim=4, num_layers=1, num_fmb=4, num_lcb=4, fm_rank=4, fmb_width=16, mlp_width=16,
                   mlp_depth=1, bottom_width=8, bottom_depth=1, cross_layers=2)
    c.model.update(ctr.get(family).tiny)  # the family's own test shapes (scaling_rec/models/ctr/<family>.py)
    c.train.update(batch_size=64, num_epochs=0.0, num_steps=4 * STEPS, log_every=1, eval_every=12, learning_rate=3e-2)
    c.eval.update(patience=0, batch_size=256)
    c.logging.progress = False
    return c


def _tiger_config(data_dir: pathlib.Path) -> ml_collections.ConfigDict:
    from scaling_rec.tiger_config import default_config

    c = default_config()
    c.study = "golden"
    c.data.update(data_dir=str(data_dir), max_items=3, encoder_dim=4)
    c.ids.update(method="rqkmeans", levels=2, codebook_size=4)
    c.model.update(d_model=16, num_layers=1, num_heads=2, head_dim=8, d_ff=32, user_buckets=7)
    c.train.update(batch_size=8, num_steps=STEPS, log_every=1, eval_every=3, warmup_steps=2)
    c.eval.update(beam_width=10, batch_size=16, valid_users=0, test_users=0)
    c.logging.progress = False
    return c


def write_beauty_like(root: pathlib.Path, num_users: int = 40, num_items: int = 24) -> pathlib.Path:
    """A seeded, Beauty-shaped data directory (S3-Rec sequences, P5 ASIN join, titles, attributes) for TIGER."""
    rng = np.random.default_rng(7)
    s3, meta = root / "amazon-beauty-s3rec", root / "amazon-beauty-meta"
    (s3 / "p5_asin").mkdir(parents=True, exist_ok=True)
    meta.mkdir(parents=True, exist_ok=True)
    seqs = [list(range(1, num_items + 1))]  # every item appears, first in the order 1, 2, ... (the ASIN join)
    seqs += [[int(i) for i in rng.integers(1, num_items + 1, size=int(rng.integers(3, 9)))]
             for _ in range(num_users - 1)]
    (s3 / "Beauty.txt").write_text("".join(f"{u + 1} {' '.join(map(str, s))}\n" for u, s in enumerate(seqs)))
    (s3 / "p5_asin" / "user_sequence.txt").write_text(
        "".join(f"U{u} {' '.join(f'A{i}' for i in s)}\n" for u, s in enumerate(seqs)))
    (meta / "item_id_to_int.json").write_text(json.dumps({f"A{i}": i for i in range(1, num_items + 1)}))
    words = ("lip", "gloss", "serum", "mask", "brush", "polish", "cream")
    titles = "".join(f'{i},{i},"{words[i % 7]} {words[(3 * i) % 7]} {i % 4}"\n' for i in range(1, num_items + 1))
    (meta / "products_lookup.csv").write_text(",global_product_id,name\n" + titles)
    attrs = {str(i): [i % 5, 20 + i % 3] for i in range(1, num_items + 1)}
    (s3 / "Beauty_item2attributes.json").write_text(json.dumps(attrs))
    return root


def config(family: str, workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The tiny config of `family` (TIGER's data directory is written under `workdir`)."""
    if family in SEQUENCE_FAMILIES:
        return _sequence_config(family)
    if family in CTR_FAMILIES:
        return _ctr_config(family)
    if family in TIGER_FAMILIES:
        return _tiger_config(write_beauty_like(workdir / "data"))
    raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")


def _stable(value: Any) -> Any:
    """`value` without its volatile fields (recursively)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE and not k.endswith("_s")}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    return value


def record(family: str, workdir: pathlib.Path) -> dict[str, Any]:
    """Trains `family`'s tiny run in `workdir` and returns its losses by step and its stable result fields."""
    workdir = pathlib.Path(workdir)
    os.environ["SCALING_REC_CACHE"] = str(workdir / "cache")
    from scaling_rec.train.tasks import train_one

    result = train_one(config(family, workdir), workdir / "runs_root")
    metrics = workdir / "runs_root" / "runs" / result["run_id"] / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    losses = {str(r["step"]): r["loss"] for r in lines if "loss" in r}
    return {"losses": losses, "result": _stable(json.loads(json.dumps(result)))}
