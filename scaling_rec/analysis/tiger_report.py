"""Tables and figures of the TIGER Beauty benchmark (`benchmarks/tiger_beauty.py` JSON outputs).

Each output holds, per preset, one run's result (scaling_rec/train/tiger_loop.py): the test metrics at the
last step (`eval`) and at the best validation step (`best`, absent in runs made before it existed), the
validation curve, the popularity floor on the same test users, and the paper's numbers (`paper`, Rajput et
al. 2023, Table 1). This module flattens several outputs into one standing table and one curve table,
and draws validation NDCG@10 by step next to test Recall@10 by training examples.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scaling_rec.analysis.plots import family_colour

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
PAPER_EXAMPLES = 200_000 * 256  # the paper's Beauty training: 200k steps of batch 256


def load_tiger_benchmarks(paths: Iterable[str | pathlib.Path]) -> dict[str, dict[str, Any]]:
    """{file stem: the benchmark's JSON} for each path (e.g. benchmarks/results/tiger_beauty_*.json)."""
    return {pathlib.Path(p).stem: json.loads(pathlib.Path(p).read_text()) for p in sorted(map(str, paths))}


def _device(bench: Mapping[str, Any]) -> str:
    return str(bench.get("machine", {}).get("device_kind", ""))


def standing_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (file, preset, checkpoint) plus the paper's row.

    checkpoint: 'last' (the last step trained) or 'best' (the step of the best validation NDCG@10).
    Columns: file, preset, device, ids, checkpoint, step, examples_seen, paper_share (examples_seen / the
    paper's 51.2M), test users, the four test METRICS, recall@10_se, ndcg@10_se, popularity_recall@10 (the
    most-popular floor on the same test users; NaN where the run did not record it).
    """
    rows, paper = [], None
    for name, bench in benches.items():
        paper = paper or bench.get("paper", {}).get("TIGER")
        for preset, r in bench.get("runs", {}).items():
            points = [("last", r["steps"], {k.removeprefix("test/"): v for k, v in r["eval"].items()})]
            if r.get("best") and r["best"].get("test"):
                points.append(("best", r["best"]["step"], r["best"]["test"]))
            for checkpoint, step, test in points:
                examples = step * r["config"]["train"]["batch_size"]
                rows.append({
                    "file": name, "preset": preset, "device": _device(bench), "ids": r["ids_method"],
                    "checkpoint": checkpoint, "step": step, "examples_seen": float(examples),
                    "paper_share": examples / PAPER_EXAMPLES, "test_users": r["num_test_users"],
                    **{k: test.get(k, np.nan) for k in METRICS},
                    "recall@10_se": test.get("recall@10_se", np.nan), "ndcg@10_se": test.get("ndcg@10_se", np.nan),
                    "popularity_recall@10": (r.get("popularity_test") or {}).get("recall@10", np.nan),
                })
    if paper:
        rows.append({"file": "paper (Rajput et al. 2023, Table 1)", "preset": "TIGER", "checkpoint": "final",
                     "step": PAPER_EXAMPLES // 256, "examples_seen": float(PAPER_EXAMPLES), "paper_share": 1.0,
                     **{k: paper.get(k, np.nan) for k in METRICS}})
    return pd.DataFrame(rows)


def curve_table(benches: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per validation point: file, preset, step, examples_seen, valid_users and the validation
    METRICS with recall@10_se / ndcg@10_se."""
    rows = []
    for name, bench in benches.items():
        for preset, r in bench.get("runs", {}).items():
            for p in r.get("curve", []):
                rows.append({"file": name, "preset": preset, "step": p["step"], "examples_seen": p["examples_seen"],
                             "valid_users": r.get("num_valid_users_in_curve"),
                             **{k: p.get(f"valid/{k}", np.nan) for k in (*METRICS, "recall@10_se", "ndcg@10_se")}})
    return pd.DataFrame(rows)


def plot_tiger(standing: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Left: validation NDCG@10 (± 1 SE band) by step, one line per (file, preset). Right: test Recall@10
    (± 1 SE) by training examples, last and best checkpoints, with the paper's value at its 51.2M
    examples and the popularity floor."""
    fig = Figure(figsize=(11, 4.2))
    ax_v, ax_t = fig.subplots(1, 2)
    runs = [key for key, _ in curves.groupby(["file", "preset"], sort=True)] if len(curves) else []
    for i, (name, preset) in enumerate(runs):
        c = curves[(curves["file"] == name) & (curves["preset"] == preset)].sort_values("step")
        label = f"{name}:{preset} ({int(c['valid_users'].iloc[0])} users)"
        ax_v.plot(c["step"], c["ndcg@10"], marker="o", ms=3, color=family_colour(i), label=label)
        ax_v.fill_between(c["step"], c["ndcg@10"] - c["ndcg@10_se"], c["ndcg@10"] + c["ndcg@10_se"],
                          color=family_colour(i), alpha=0.15)
    runs_t = standing[standing["checkpoint"].isin(["last", "best"])]
    for i, ((name, preset), g) in enumerate(runs_t.groupby(["file", "preset"], sort=True)):
        for checkpoint, marker in (("last", "o"), ("best", "*")):
            row = g[g["checkpoint"] == checkpoint]
            if not row.empty:
                ax_t.errorbar(row["examples_seen"], row["recall@10"], yerr=row["recall@10_se"], fmt=marker,
                              ms=8, color=family_colour(i), label=f"{name}:{preset} ({checkpoint})")
    paper = standing[standing["checkpoint"] == "final"]
    if not paper.empty:
        ax_t.axhline(float(paper["recall@10"].iloc[0]), color="black", ls="--", lw=1, label="paper R@10")
        ax_t.plot(paper["examples_seen"], paper["recall@10"], "kD", label="paper (200k x 256)")
    floor = runs_t["popularity_recall@10"].dropna()
    if not floor.empty:
        ax_t.axhline(float(floor.iloc[0]), color="grey", ls=":", lw=1, label="popularity (same users)")
    ax_v.set(xlabel="training step (batch 256 unless the preset says otherwise)", ylabel="validation NDCG@10")
    ax_t.set(xlabel="training examples", ylabel="test Recall@10", xscale="log")
    for ax in (ax_v, ax_t):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
