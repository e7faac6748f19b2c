r"""Sequence length: HSTU with histories of 50 → 400 events on ML-100K (median history ≈ 65, max 737).

Command:
  SCALING_REC_DATA=../shared/data python -m launch.sweep \
      --config=experiments/hstu/seq_len.py:quick --workdir=runs/ --executor=inline
Presets (hstu/S unless stated; ML-100K has timestamps, so the time bias is on):
  quick  max_len 50, 100, 200 × 20 epochs (8 steps each), one evaluation at the end: 3 runs.
  full   max_len 50, 100, 200, 400 × hstu/S and hstu/M × 100 epochs, evaluation every 10: 8 runs.
Runtime (estimated from measured step rates on the shared 2-core CPU; tokens per step grow with
max_len): quick ≈ 3 min, full ≈ 30 min.
Expected result: longer histories help on MovieLens (the HSTU paper trains ML-1M at 200), with
diminishing returns beyond ≈ 200 events; training FLOPs per example grow with max_len (attention
is quadratic per sequence), so compare at equal epochs here and at equal FLOPs with a budget.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference

LENGTHS = {"quick": [50, 100, 200], "full": [50, 100, 200, 400]}


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    if preset not in LENGTHS:
        raise ValueError(f"unknown preset {preset!r}; use quick or full")
    epochs, every = (20.0, 10**6) if preset == "quick" else (100.0, 10)
    c = reference("ml-100k", "hstu_seq_len", "hstu", max_len=50, num_epochs=epochs, eval_every_epochs=every,
                  steps_per_epoch=8)
    c.eval.patience = 0
    c.logging.wandb = False
    return c


def get_sweep(preset: str = "quick") -> list[dict]:
    sizes = ["hstu/S"] if preset == "quick" else ["hstu/S", "hstu/M"]
    return [{"size": s, "data.max_len": n} for s in sizes for n in LENGTHS[preset]]
