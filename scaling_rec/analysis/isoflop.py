"""IsoFLOP analysis (Hoffmann et al. 2022, Approach 2, Section 3.2).

Per compute budget C, log L is fitted by a parabola in log N,

    log L ≈ p2·x² + p1·x + p0,   x = log N,

whose vertex gives the compute-optimal size N*(C) = exp(−p1 / 2 p2) and loss L*(C) = exp(vertex value)
(logarithms are base 10 in the code; the vertex is the same in any base).  In log space every run's
relative error weighs the same, however large its L, and L* is always > 0; L itself must therefore
be > 0.  D*(C) is read from the budget's own D–N relation (its log D vs log N line evaluated at
log N*); C/(6 N*), the language-model rule, does not apply here: D counts examples, and these models
spend hundreds to thousands of FLOPs per parameter and example, not 6.  Power laws N* ∝ C^a and
D* ∝ C^b are then fitted by least squares in log–log space, and their exponents' intervals are the
t-intervals of those least-squares slopes (`IsoFlopFit.intervals`).  A bootstrap that resamples whole
budgets cannot stand in for them: with 2 budgets every resample that can be fitted holds both, so its
interval has zero width, and with 3-5 budgets it covered a planted exponent 72-87% of the time at a
nominal 95% (the t-interval: 96% / 95.5%, tests/analysis/test_fits.py).  Units: C in FLOPs, N in
parameters, D in examples, L in the fitted quantity's units.

A parabola without a minimum has no optimum: negative curvature, or a curvature indistinguishable from
zero (the bowl rises by less than CURVATURE_RTOL over the sampled sizes, or, with 4 or more sizes,
p2 is not above 0 by a one-sided t-test at CURVATURE_P); such a budget is skipped with its flag.  And
the data as a whole are tested for flatness (`flags.flat_test`) against a pooled IsoFLOP surface.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from scaling_rec.analysis.fits import check_positive
from scaling_rec.analysis.flags import FlatTest, flat_test
from scaling_rec.errors import FitError

CURVATURE_RTOL = 1e-6
"""A parabola whose curvature term lifts L by less than this (relative) from the centre of the sampled
sizes to their edge is flat in N: zero curvature, no optimum."""
CURVATURE_P = 0.05
"""With >= 4 sizes, p2 must exceed 0 by a one-sided t-test at this level."""


class _Skip(FitError):
    """One budget without an optimum; `code` names why (too_few_sizes, negative_curvature, …)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def group_budgets(C: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """Integer group per point: budgets within a relative `rtol` of their neighbour share a group.

    Spent FLOPs differ a little from the planned budget; grouping by closeness keeps one budget's
    runs together.  Groups are numbered in increasing C.
    """
    c = np.asarray(C, dtype=np.float64)
    order = np.argsort(c, kind="stable")
    groups = np.empty(c.size, dtype=np.int64)
    g = 0
    for rank, i in enumerate(order):
        if rank > 0 and c[i] > c[order[rank - 1]] * (1.0 + rtol):
            g += 1
        groups[i] = g
    return groups


def compute_frontier(C: np.ndarray, L: np.ndarray, rtol: float = 0.05,
                     budgets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lowest loss per budget: ([G] median C of the group, [G] min L), sorted by budget.

    budgets: the planned budget of each run, used for grouping when given. A big model at a small
    budget overshoots it by up to one (expensive) step, so its spent C can sit more than `rtol` above
    the budget's other runs; grouping by what was planned keeps one budget's runs together.
    """
    c = np.asarray(C, dtype=np.float64)
    y = np.asarray(L, dtype=np.float64)
    groups = group_budgets(c if budgets is None else np.asarray(budgets, dtype=np.float64), rtol)
    ids = np.unique(groups)
    return (
        np.array([np.median(c[groups == g]) for g in ids]),
        np.array([np.min(y[groups == g]) for g in ids]),
    )


def pareto_frontier(C: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs no cheaper run beats: ([G] C, [G] L) sorted by C, L strictly falling.

    The frontier for studies where every run has its own compute (fixed-length size ladders, e.g.
    the Wukong study): a run that costs more but does no better than a cheaper one is not on it.
    (IsoFLOP grids use `compute_frontier`, the best run of each planned budget, which does not
    select favourable noise across budgets.)
    """
    c = np.asarray(C, dtype=np.float64)
    y = np.asarray(L, dtype=np.float64)
    order = np.lexsort((y, c))
    keep: list[int] = []
    for i in order:
        if not keep or y[i] < y[keep[-1]]:
            keep.append(int(i))
    return c[keep], y[keep]


@dataclasses.dataclass(frozen=True)
class BudgetOptimum:
    """One budget's parabola log10 L ≈ p2·x² + p1·x + p0, x = log10 N, and its vertex."""

    C: float
    n_sizes: int
    coeffs: tuple[float, float, float]  # (p2, p1, p0) of log10 L in x = log10 N, numpy.polyfit order
    N_opt: float  # 10^(−p1 / 2 p2), parameters
    D_opt: float  # examples
    L_opt: float  # 10^(vertex value), the fitted quantity's units, > 0
    extrapolated: bool  # N_opt lies outside the budget's sampled sizes

    def curve(self, N: np.ndarray) -> np.ndarray:
        """The fitted L at sizes N ([k] parameters → [k] L)."""
        return 10.0 ** np.polyval(self.coeffs, np.log10(np.asarray(N, dtype=np.float64)))


@dataclasses.dataclass(frozen=True)
class IsoFlopFit:
    """Per-budget optima and N* = kN·C^a, D* = kD·C^b fitted on the interior optima only.

    An optimum flagged `extrapolated` (vertex outside its budget's sampled sizes) is listed but does
    not enter a, b: its N* is a parabola's extrapolation, unbounded in principle (a vertex at
    N* ≈ 1e-36 once gave a = -7). With fewer than 2 interior optima, a, b, kN, kD are NaN.
    """

    optima: tuple[BudgetOptimum, ...]
    skipped: tuple[tuple[float, str, str], ...]  # (budget C, reason, flag code)
    a: float
    b: float
    log10_kN: float
    log10_kD: float
    n_points: int
    n_interior: int  # optima inside their sampled sizes: the ones a and b are fitted on
    flat: FlatTest | None = None  # the pooled surface against a constant (`pooled_flat_test`)

    def predict_N(self, C: np.ndarray | float) -> np.ndarray:
        """Compute-optimal parameters N*(C)."""
        return 10.0 ** (self.log10_kN + self.a * np.log10(np.asarray(C, dtype=np.float64)))

    def predict_D(self, C: np.ndarray | float) -> np.ndarray:
        """Compute-optimal examples D*(C)."""
        return 10.0 ** (self.log10_kD + self.b * np.log10(np.asarray(C, dtype=np.float64)))

    def params(self) -> dict[str, float]:
        """The fitted exponents."""
        return {"a": self.a, "b": self.b}

    def intervals(self, ci: float = 0.95) -> dict[str, tuple[float, float]]:
        """{'a': (low, high), 'b': (low, high)}: two-sided t-intervals of the least-squares slopes of
        log10 N* and log10 D* on log10 C over the k interior optima (k − 2 degrees of freedom; the scatter
        of the optima about the line carries each parabola's error).

        Raises:
          FitError: fewer than 3 interior optima (2 points fix a line and leave no degree of freedom
            to measure its error).
        """
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        interior = [o for o in self.optima if not o.extrapolated]
        k = len(interior)
        if k < 3:
            raise FitError(f"{k} interior optima: the slopes of N* and D* against C need at least 3 for an "
                           "interval (2 fix the line exactly); add budgets whose sampled sizes bracket the optimum")
        x = np.log10([o.C for o in interior])
        t_crit = float(stats.t.ppf(0.5 + ci / 2.0, k - 2))
        out = {}
        for name, est, y in (("a", self.a, [o.N_opt for o in interior]), ("b", self.b, [o.D_opt for o in interior])):
            slope, icpt = np.polyfit(x, np.log10(y), 1)
            rss = float(np.sum((np.log10(y) - (icpt + slope * x)) ** 2))
            se = float(np.sqrt(rss / (k - 2) / np.sum((x - x.mean()) ** 2)))
            out[name] = (est - t_crit * se, est + t_crit * se)
        return out


def _check_curvature(x: np.ndarray, log_y: np.ndarray, p2: float) -> None:
    """_Skip unless the parabola (curvature p2 of log10 L in x = log10 N) has a real minimum."""
    lift = abs(p2) * (np.ptp(x) / 2.0) ** 2 * np.log(10.0)  # relative rise of L from curvature alone
    if lift <= CURVATURE_RTOL:
        raise _Skip("zero_curvature", f"parabola of log L has zero curvature (p2 = {p2:.3g}: L changes by "
                    f"{lift:.2g} relative over the sampled sizes from curvature): flat in N, no optimum")
    if p2 < 0:
        raise _Skip("negative_curvature",
                    f"parabola of log L opens downward (curvature {p2:.3g}): no interior optimum")
    k = x.size
    if k >= 4:
        design = np.stack([x**2, x, np.ones(k)], axis=1)
        coef, *_ = np.linalg.lstsq(design, log_y, rcond=None)
        s2 = float(np.sum((design @ coef - log_y) ** 2)) / (k - 3)
        se = float(np.sqrt(s2 * np.linalg.inv(design.T @ design)[0, 0]))
        t_crit = float(stats.t.ppf(1.0 - CURVATURE_P, k - 3))
        if se > 0 and p2 / se <= t_crit:
            raise _Skip("zero_curvature", f"parabola of log L has curvature {p2:.3g} ± {se:.2g} (t = {p2 / se:.2f} "
                        f"<= {t_crit:.2f}, {k - 3} df): not distinguishable from 0, no optimum")


def pooled_flat_test(c: np.ndarray, n: np.ndarray, y: np.ndarray) -> FlatTest:
    """`flags.flat_test` of a pooled IsoFLOP surface against a constant, in ln L.

    The surface ln L ~ 1 + x + x² + u + x·u (x = log N, u = log C, by least squares) is the shape an
    IsoFLOP grid has under a Chinchilla law: a bowl in N whose depth and vertex move with C.
    """
    x = np.log(n) - np.log(n).mean()
    u = np.log(c) - np.log(c).mean()
    design = np.stack([np.ones_like(x), x, x * x, u, x * u], axis=1)
    log_y = np.log(y)
    coef, _, rank, _ = np.linalg.lstsq(design, log_y, rcond=None)
    return flat_test(log_y, design @ coef, int(rank))


def _fit_budget(c: float, n: np.ndarray, d: np.ndarray, y: np.ndarray) -> BudgetOptimum:
    """One budget's optimum from its runs: n, d, y are [k] parameters, examples and L (> 0)."""
    sizes = np.unique(n)
    if sizes.size < 3:
        raise _Skip("too_few_sizes", f"{sizes.size} distinct sizes; a parabola in log N needs at least 3")
    x = np.log10(n)
    p2, p1, p0 = np.polyfit(x, np.log10(y), 2)
    _check_curvature(x, np.log10(y), p2)
    x_opt = -p1 / (2.0 * p2)
    if np.unique(d).size < 2:
        raise _Skip("no_d_spread", "all runs of this budget have the same D; cannot interpolate D at N*")
    slope, icpt = np.polyfit(x, np.log10(d), 1)
    d_opt = 10.0 ** (icpt + slope * x_opt)
    return BudgetOptimum(
        C=c,
        n_sizes=int(sizes.size),
        coeffs=(float(p2), float(p1), float(p0)),
        N_opt=float(10.0**x_opt),
        D_opt=float(d_opt),
        L_opt=float(10.0 ** np.polyval([p2, p1, p0], x_opt)),
        extrapolated=bool(x_opt < x.min() or x_opt > x.max()),
    )


def isoflop_optima(
    data: pd.DataFrame | np.ndarray | Sequence[float],
    N: np.ndarray | None = None,
    D: np.ndarray | None = None,
    L: np.ndarray | None = None,
    *,
    columns: tuple[str, str, str, str] = ("budget", "N", "D", "y"),
    budget_rtol: float = 0.05,
    metric: str = "L",
    transform: str = "none",
) -> IsoFlopFit:
    """IsoFLOP optima per budget and the exponents a, b of N* ∝ C^a, D* ∝ C^b.

    Each budget's log L is fitted by a parabola in log N (module docstring), so every L must be > 0.
    Of the transforms of `scaling_rec.analysis.results.select_target`, 'reciprocal' guarantees it
    (1 / metric > 0 for any metric > 0; a metric ≤ 0 maps to +inf and is refused); 'one_minus' gives
    L > 0 only for a metric < 1 (a metric at its ceiling 1 gives L = 0); 'none' only for a positive
    metric (a cross-entropy loss is; a log-likelihood or a centred score need not be).

    Args:
      data: a DataFrame (C, N, D, L read from `columns`) or the array of budgets C [n] (FLOPs),
        with N, D, L the matching [n] arrays (parameters, examples, the fitted quantity's units).
      budget_rtol: relative tolerance grouping points into budgets (see `group_budgets`).
      metric, transform: what L is (the metric column and the transform that made L of it); named
        by the error for an L ≤ 0.
    Returns:
      IsoFlopFit; budgets with < 3 distinct sizes or a parabola without a minimum (negative or zero
      curvature) are listed in `skipped` with a flag code; `flat` tests the whole grid; an
      optimum outside its budget's sampled sizes is kept, flagged `extrapolated`, and left out of
      the fit of a and b (NaN with fewer than 2 interior optima).
    Raises:
      FitError: fewer than 2 budgets yield an optimum (the message gives each budget's reason),
        a C, N or D is non-positive/non-finite, or an L is (the message names metric and transform).
    """
    if isinstance(data, pd.DataFrame):
        c_col, n_col, d_col, l_col = columns
        c, n, d, y = (data[k].to_numpy(dtype=np.float64) for k in (c_col, n_col, d_col, l_col))
    else:
        if N is None or D is None or L is None:
            raise TypeError("isoflop_optima(C, N, D, L): N, D and L are required with an array C")
        c, n, d, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (data, N, D, L))
    c, n, d = (check_positive(k, v) for k, v in zip("CND", (c, n, d), strict=True))
    y = check_positive(
        f"L (IsoFLOP parabolas are fitted to log L; here metric {metric!r} with transform {transform!r})", y,
        hint="Drop those runs, or fit a transform that is > 0 on them ('reciprocal' is, for any metric > 0; "
             "'one_minus' only below 1).")
    if not c.size == n.size == d.size == y.size:
        raise FitError(f"arrays differ in length: C {c.size}, N {n.size}, D {d.size}, L {y.size}")
    groups = group_budgets(c, budget_rtol)
    optima: list[BudgetOptimum] = []
    skipped: list[tuple[float, str, str]] = []
    for g in np.unique(groups):
        m = groups == g
        budget = float(np.median(c[m]))
        try:
            optima.append(_fit_budget(budget, n[m], d[m], y[m]))
        except _Skip as e:
            skipped.append((budget, str(e), e.code))
    if len(optima) < 2:
        budgets = len(np.unique(groups))
        detail = "; ".join(f"C={cb:.3g}: {why}" for cb, why, _ in skipped) or (
            "no usable points" if not budgets else "only one budget in the data")
        raise FitError(f"{len(optima)} budget(s) with an optimum, need at least 2 for N* ∝ C^a ({detail})")
    interior = [o for o in optima if not o.extrapolated]
    if len(interior) >= 2:
        log_c = np.log10([o.C for o in interior])
        a, kn = np.polyfit(log_c, np.log10([o.N_opt for o in interior]), 1)
        b, kd = np.polyfit(log_c, np.log10([o.D_opt for o in interior]), 1)
    else:
        a = b = kn = kd = float("nan")
    return IsoFlopFit(
        optima=tuple(optima),
        skipped=tuple(skipped),
        a=float(a),
        b=float(b),
        log10_kN=float(kn),
        log10_kD=float(kd),
        n_points=int(c.size),
        n_interior=len(interior),
        flat=pooled_flat_test(c, n, y),
    )
