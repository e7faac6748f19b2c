"""Fit diagnostics: the ways a scaling-law fit can look confident and be wrong, each with a name.

A parameter is reported "identified" only when none of these holds (codes as in fits.json):

- ``flat``: the law does not describe the data better than a constant does. F-test of the fitted
  law against the constant (mean of log L), in log space, on the fitted points (e.g. Seber & Wild
  1989, *Nonlinear Regression*, §5.3, the extra-sum-of-squares F-test, approximate for a nonlinear
  law):  F = ((RSS_const − RSS_law) / (p − 1)) / (RSS_law / (n − p)),  flat when P(F) > FLAT_P.
  Data that do not vary at all (every L equal to 1e-12 relative) are flat whatever the fit.
- ``at_lower_bound`` / ``at_upper_bound``: the optimum sits within BOUND_RTOL of the box's width
  from an edge of the parameter's search box (`fits.search_box`): the box, not the data, set it.
- ``ci_wide``: a positive parameter whose CI ends differ by more than CI_RATIO_LIMIT×.
- ``ci_at_bound``: an end of a boxed parameter's CI sits on an edge of its search box (within
  BOUND_RTOL of the box's width): resamples ran into the box, so the box, not the data, ends the CI.
- ``ci_reaches_zero``: a positive parameter (an exponent or a scale) whose CI reaches 0 or below.
- ``ci_not_finite``, ``no_ci``, ``undefined``: no usable interval, no interval, no estimate.
- ``zero_curvature`` / ``negative_curvature``: an IsoFLOP parabola without a minimum (`isoflop`).
- ``too_few_optima``: IsoFLOP a, b from only 2 interior optima: a line through 2 points, no interval.
- ``too_few_sizes`` / ``too_few_data_sizes``: a Chinchilla fit on fewer than 3 distinct N (D): E, A, α
  (E, B, β) lie on a ridge of exact fits (`fits.MIN_LEVELS`).
- ``extrapolation``: a prediction more than EXTRAPOLATION_LIMIT× beyond the largest fitted budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

FLAT_P = 0.05
"""A law whose F-test against a constant has p > FLAT_P does not beat the constant: flat."""
BOUND_RTOL = 1e-4
"""An estimate within this fraction of its search box's width from an edge is 'at the bound' (5e-4 for an
exponent in [0, 5]: L-BFGS-B puts an active bound exactly on the edge; 1e-3 flagged a real α = 0.004)."""
CI_RATIO_LIMIT = 10.0
"""A positive parameter whose CI's high / low exceeds this is not identified (issue 15, item 6)."""
EXTRAPOLATION_LIMIT = 10.0
"""A prediction beyond this multiple of the largest fitted budget is an extrapolation, not a test."""
_CONSTANT_RTOL = 1e-12

WORDS = {
    "flat": "flat data (the law does not beat a constant)",
    "at_lower_bound": "at the lower bound of its search box",
    "at_upper_bound": "at the upper bound of its search box",
    "ci_reaches_zero": "CI reaches 0",
    "ci_at_bound": "CI ends at an edge of its search box (the box, not the data, bounds it)",
    "ci_not_finite": "CI not finite",
    "undefined": "undefined",
    "too_few_optima": "only 2 interior IsoFLOP optima (a line through 2 points has no error estimate)",
    "too_few_sizes": "fewer than 3 distinct model sizes (E, A, α lie on a ridge of equal fits)",
    "too_few_data_sizes": "fewer than 3 distinct data sizes (E, B, β lie on a ridge of equal fits)",
}


@dataclasses.dataclass(frozen=True)
class FlatTest:
    """The fitted law against a constant on the same points, in log L (see the module docstring).

    span_rel: the law's relative change over the fitted points (max − min of log L̂);
    scatter_rel: the root-mean-square log residual of the law (its relative scatter).
    """

    F: float
    p_value: float
    df: tuple[int, int]  # (p − 1, n − p)
    rss_law: float
    rss_const: float
    span_rel: float
    scatter_rel: float
    flat: bool

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "df": list(self.df)}

    def describe(self) -> str:
        """One line for the report."""
        if self.rss_const <= 0.0 or not np.isfinite(self.F):
            what = "every point has the same value" if self.flat else "the law fits every point exactly"
        else:
            what = f"F = {self.F:.3g} on {self.df[0]}, {self.df[1]} df, p = {self.p_value:.2g}"
        verdict = "FLAT: the law does not beat a constant" if self.flat else "the law beats a constant"
        return (f"{verdict} ({what}; the law spans {self.span_rel:.3g} in log L over the fitted range, "
                f"residual scatter {self.scatter_rel:.3g})")


def flat_test(log_y: np.ndarray, log_pred: np.ndarray, n_params: int, p_limit: float = FLAT_P) -> FlatTest:
    """F-test of a fitted law (predictions log_pred, n_params parameters) against a constant.

    Args:
      log_y: [n] log of the fitted values.  log_pred: [n] log of the law's predictions there.
      n_params: the law's parameter count p (n > p).  p_limit: flat when p-value > p_limit.
    """
    y = np.asarray(log_y, dtype=np.float64).reshape(-1)
    pred = np.asarray(log_pred, dtype=np.float64).reshape(-1)
    n = y.size
    rss_law = float(np.sum((pred - y) ** 2))
    rss_const = float(np.sum((y - y.mean()) ** 2))
    df = (n_params - 1, n - n_params)
    span = float(np.ptp(pred)) if n else 0.0
    scatter = float(np.sqrt(rss_law / n)) if n else 0.0
    if np.ptp(y) <= _CONSTANT_RTOL * max(1.0, float(np.max(np.abs(y)))):
        return FlatTest(0.0, 1.0, df, rss_law, rss_const, span, scatter, True)
    if df[1] <= 0 or df[0] <= 0:
        return FlatTest(float("nan"), float("nan"), df, rss_law, rss_const, span, scatter, False)
    if rss_law <= 0.0:
        return FlatTest(float("inf"), 0.0, df, rss_law, rss_const, span, scatter, False)
    f = max(0.0, (rss_const - rss_law) / df[0]) / (rss_law / df[1])
    p = float(stats.f.sf(f, df[0], df[1]))
    return FlatTest(float(f), p, df, rss_law, rss_const, span, scatter, bool(p > p_limit))


def bound_flag(value: float, low: float, high: float, rtol: float = BOUND_RTOL) -> str | None:
    """'at_lower_bound' / 'at_upper_bound' when value is within rtol·(high − low) of an edge."""
    tol = rtol * (high - low)
    if value <= low + tol:
        return "at_lower_bound"
    if value >= high - tol:
        return "at_upper_bound"
    return None


def ci_bound_flag(ci: dict[str, float], low: float, high: float, rtol: float = BOUND_RTOL) -> str | None:
    """'ci_at_bound' when an end of the interval {'low', 'high'} lies within rtol·(high − low) of the box's
    edges (or beyond them); None otherwise or without a finite interval."""
    lo, hi = ci.get("low"), ci.get("high")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    tol = rtol * (high - low)
    return "ci_at_bound" if lo <= low + tol or hi >= high - tol else None


def ci_flags(ci: dict[str, float], positive: bool) -> list[str]:
    """Flags of one bootstrap interval {'low', 'high'}; positive: the parameter must be > 0."""
    lo, hi = ci.get("low"), ci.get("high")
    if lo is None or hi is None:
        return ["no_ci"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ["ci_not_finite"]
    if not positive:
        return []
    if lo <= 0:
        return ["ci_reaches_zero"]
    return ["ci_wide"] if hi / lo > CI_RATIO_LIMIT else []


def describe(code: str, ci: dict[str, float] | None = None) -> str:
    """Words for a flag code (ci: the interval, for 'ci_wide')."""
    if code == "ci_wide" and ci:
        return f"CI spans {ci['high'] / ci['low']:.3g}× (> {CI_RATIO_LIMIT:.0f}×)"
    return WORDS.get(code, code.replace("_", " "))


def is_extrapolation(ratio: float) -> bool:
    """Whether a prediction at `ratio`× the largest fitted budget lies beyond EXTRAPOLATION_LIMIT
    (a relative 1e-9 of slack: a grid whose budgets step by exactly 10× is not flagged)."""
    return bool(ratio > EXTRAPOLATION_LIMIT * (1.0 + 1e-9))


def extrapolation_ratio(c_target: np.ndarray | float, c_fitted: np.ndarray) -> float:
    """Largest target budget over the largest fitted budget (> 1: beyond the fitted range)."""
    return float(np.max(np.asarray(c_target, dtype=np.float64)) / np.max(np.asarray(c_fitted, dtype=np.float64)))
