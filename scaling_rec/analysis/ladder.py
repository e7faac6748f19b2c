"""Fixed-length size ladders: how the fitted quantity moves with compute per example at fixed data.

The Wukong paper's scaling claim (Zhang et al. 2024, §6) is about compute per example: the same
examples, models of growing FLOPs per example, quality still improving (Wukong) or flat (DLRM).
A ladder here is one family's runs that saw the same number of examples D (within `rtol`) at >= 3
different sizes; a rung is one size (N and size label), its replicate runs averaged (value and FLOPs per example), so
that a replicate of the largest size is never its own "smaller rung". Per ladder: the values in order
of training FLOPs per example (C / D), the best rung, the gain of the largest rung over the best
smaller one, and the least-squares slope of the value against log10(C / D) over the top decade of the
ladder (the rungs within 10x of the largest), in units of the fitted quantity per 10x compute per
example (negative = a loss still falling).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from scaling_rec.analysis.isoflop import group_budgets

MIN_RUNGS = 3


@dataclasses.dataclass(frozen=True)
class Ladder:
    """One family's runs at one data size D, in increasing compute per example."""

    family: str
    D: float  # examples seen (median of the group)
    sizes: tuple[str, ...]  # [k] size labels
    per_example: np.ndarray  # [k] training FLOPs per example, increasing
    values: np.ndarray  # [k] fitted quantity (lower is better), the mean of the rung's runs
    runs: tuple[int, ...]  # [k] runs averaged into each rung
    top_decade_slope: float  # d value / d log10(per_example) over the rungs within 10x of the largest
    top_decade_rungs: int

    @property
    def best(self) -> int:
        return int(np.argmin(self.values))

    @property
    def last_gain(self) -> float:
        """min(values of the smaller rungs) − value of the largest rung (> 0: the largest still helps)."""
        return float(np.min(self.values[:-1]) - self.values[-1])

    def to_dict(self) -> dict:
        return {
            "family": self.family, "D": self.D, "sizes": list(self.sizes),
            "flops_per_example": self.per_example.tolist(), "values": self.values.tolist(), "runs": list(self.runs),
            "best_size": self.sizes[self.best], "last_gain": self.last_gain,
            "top_decade_slope": self.top_decade_slope, "top_decade_rungs": self.top_decade_rungs,
        }


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def find_ladders(df: pd.DataFrame, y: np.ndarray, *, rtol: float = 0.05) -> list[Ladder]:
    """Ladders in one family's usable rows (`df` with columns C, D, N, size, family; `y` its values).

    Runs at the same D (within rtol) with at least MIN_RUNGS sizes form a ladder, one rung per size;
    ladders are returned in increasing D.
    """
    if df.empty:
        return []
    d = df["D"].to_numpy(float)
    n = df["N"].to_numpy(float)
    per_run = df["C"].to_numpy(float) / np.maximum(d, 1.0)
    values = np.asarray(y, dtype=np.float64)
    labels = df["size"].astype(str).to_numpy()
    groups = group_budgets(d, rtol)
    out = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        keys = sorted({(n[i], labels[i]) for i in idx})  # a rung: one size (equal N, other shape: two rungs)
        rungs = [idx[(n[idx] == k[0]) & (labels[idx] == k[1])] for k in keys]
        if len(rungs) < MIN_RUNGS:
            continue
        per_ex = np.array([per_run[r].mean() for r in rungs])
        order = np.argsort(per_ex, kind="stable")
        rungs, per_ex = [rungs[i] for i in order], per_ex[order]
        vals = np.array([values[r].mean() for r in rungs])
        top = per_ex >= per_ex[-1] / 10.0
        out.append(Ladder(
            family=str(df["family"].iloc[0]), D=float(np.median(d[idx])),
            sizes=tuple(labels[r[0]] for r in rungs), per_example=per_ex, values=vals,
            runs=tuple(len(r) for r in rungs),
            top_decade_slope=_slope(np.log10(per_ex[top]), vals[top]), top_decade_rungs=int(top.sum()),
        ))
    return out
