r"""Data quality: does cleaner data beat more data at the same model size?

Command (study directories: <workdir>/hstu_data_quality for ml100k, <workdir>/hstu_data_quality_beauty):
  SCALING_REC_DATA=../shared/data python -m launch.sweep \
      --config=experiments/hstu/data_quality.py:ml100k --workdir=runs/ --executor=inline
Presets:
  ml100k        ML-100K, every rating vs only ratings >= 4 (55% of the events), × hstu/XS, S, M,
                max_len 200, 30 epochs (8 steps each), evaluation every 5 epochs: 6 runs.
  beauty_dedup  Amazon Beauty raw vs consecutive repeats dropped (data.dedup), × hstu/XS, S, M,
                10 epochs, evaluation every 2 epochs on 5,000 users: 6 runs.
Runtime (estimated from measured step rates on the shared 2-core CPU): ml100k ≈ 10 min,
beauty_dedup ≈ 20 min.
Expected result: the filtered ML-100K predicts a different (liked-items-only) target, so compare
loss/NDCG trends across sizes rather than the absolute values (each arm is its own group in the
report); dedup leaves Beauty unchanged: the 5-core S3-Rec file has no consecutive repeats (0 of 198,502
events; measured, benchmarks/results/hstu_data_quality_beauty_cpu/), so the two arms are the same
runs, a check that the knob is neutral there and no answer to the question.
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import reference

SIZES = ["hstu/XS", "hstu/S", "hstu/M"]
# Per preset: the config key that differs between the arms, and each arm's value → group label.
ARMS = {
    "ml100k": ("data.min_rating", {0.0: "hstu (all ratings)", 4.0: "hstu (ratings ≥ 4)"}),
    "beauty_dedup": ("data.dedup", {False: "hstu (raw)", True: "hstu (dedup)"}),
}


def get_config(preset: str = "ml100k") -> ml_collections.ConfigDict:
    if preset == "ml100k":
        c = reference("ml-100k", "hstu_data_quality", "hstu", max_len=200, num_epochs=30.0, eval_every_epochs=5,
                      steps_per_epoch=8)
    elif preset == "beauty_dedup":
        # its own study directory: a report of runs/.../hstu_data_quality must not mix two datasets
        c = reference("amazon-beauty", "hstu_data_quality_beauty", "hstu", num_epochs=10.0, steps_per_epoch=175)
        c.eval.max_users = 5000
    else:
        raise ValueError(f"unknown preset {preset!r}; use ml100k or beauty_dedup")
    c.eval.patience = 0
    c.logging.wandb = False
    return c


def get_sweep(preset: str = "ml100k") -> list[dict]:
    """Each arm's size ladder; `group_label` names the arm, so the analysis fits the arms apart."""
    key, arms = ARMS[preset]
    return [{"size": s, key: value, "group_label": label} for value, label in arms.items() for s in SIZES]
