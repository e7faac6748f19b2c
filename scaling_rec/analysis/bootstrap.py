"""Nonparametric bootstrap of scaling-law fits and held-out-budget extrapolation checks.

`bootstrap` resamples the points with replacement (Efron & Tibshirani 1993, ch. 6) and refits;
confidence intervals are the percentile intervals of the refitted parameters (ibid., ch. 13).
`holdout_extrapolation` fits without the largest compute budget and reports the relative error
of the prediction there, the test a scaling law exists for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from scaling_rec.analysis.fits import fit_chinchilla, fit_power_law
from scaling_rec.analysis.flags import extrapolation_ratio
from scaling_rec.analysis.isoflop import group_budgets
from scaling_rec.errors import FitError


@dataclasses.dataclass(frozen=True)
class ParamCI:
    """One parameter: point estimate (fit on all points), percentile CI and bootstrap samples."""

    estimate: float
    low: float
    high: float
    samples: np.ndarray  # [n_ok] one value per successful resample

    def covers(self, value: float) -> bool:
        """Whether value lies in [low, high]."""
        return bool(self.low <= value <= self.high)


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Point fit, per-parameter CIs, and how many resamples could not be fitted (and why)."""

    fit: Any
    params: dict[str, ParamCI]
    ci: float
    n_boot: int
    n_failed: int
    failures: tuple[str, ...]  # distinct FitError messages, for the report

    def samples_table(self) -> dict[str, np.ndarray]:
        """{parameter: [n_ok] samples}, aligned across parameters (same resample per index)."""
        return {k: v.samples for k, v in self.params.items()}


def _param_dict(fit: Any) -> dict[str, float]:
    if hasattr(fit, "params"):
        return dict(fit.params())
    return {
        f.name: float(getattr(fit, f.name))
        for f in dataclasses.fields(fit)
        if isinstance(getattr(fit, f.name), float) and f.name != "loss"
    }


def bootstrap(
    fit_fn: Callable[..., Any],
    *arrays: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Bootstrap CIs for every fitted parameter of fit_fn(*arrays, **fit_kwargs).

    Args:
      fit_fn: a fit returning a dataclass with `params()` (e.g. fit_power_law, fit_chinchilla) or float
        fields. (IsoFLOP exponents take t-intervals instead: `IsoFlopFit.intervals`.)
      arrays: equal-length [n] arrays; resampling draws whole points (rows) with replacement.
      n_boot: resamples.  seed: numpy Generator seed.  ci: two-sided coverage of the interval.
      fit_kwargs: passed to every fit (e.g. n_starts=4 to speed up resample fits).
    Returns:
      BootstrapResult; resamples the fit rejects (FitError: e.g. a degenerate resampled grid) are
      counted in n_failed and left out of the percentiles.
    Raises:
      FitError: the fit on all points fails, or fewer than half of the resamples can be fitted.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise FitError(f"arrays differ in length: {[a.shape[0] for a in arrs]}")
    point = fit_fn(*arrs, **fit_kwargs)
    names = list(_param_dict(point))
    rng = np.random.default_rng(seed)
    rows: list[list[float]] = []
    failures: set[str] = set()
    n_failed = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            p = _param_dict(fit_fn(*(a[idx] for a in arrs), **fit_kwargs))
        except FitError as e:
            n_failed += 1
            failures.add(str(e))
            continue
        rows.append([p[k] for k in names])
    if len(rows) < max(2, n_boot // 2):
        first = sorted(failures)[0] if failures else ""
        raise FitError(
            f"only {len(rows)} of {n_boot} bootstrap resamples could be fitted "
            f"({len(failures)} distinct reasons; e.g. {first[:200]})"
        )
    samples = np.asarray(rows, dtype=np.float64)
    q = [(1.0 - ci) / 2.0 * 100.0, (1.0 + ci) / 2.0 * 100.0]
    est = _param_dict(point)
    params = {}
    for j, k in enumerate(names):
        lo, hi = np.percentile(samples[:, j], q)
        params[k] = ParamCI(estimate=est[k], low=float(lo), high=float(hi), samples=samples[:, j])
    return BootstrapResult(
        fit=point,
        params=params,
        ci=ci,
        n_boot=n_boot,
        n_failed=n_failed,
        failures=tuple(sorted(failures)),
    )


@dataclasses.dataclass(frozen=True)
class HoldoutResult:
    """Fit without the largest budget(s); relative errors (pred − obs) / obs at the held-out points."""

    fit: Any
    heldout_C: np.ndarray  # [h] FLOPs of the held-out points
    observed: np.ndarray  # [h]
    predicted: np.ndarray  # [h]
    n_train: int
    train_C_max: float  # FLOPs of the largest budget the fit saw

    @property
    def extrapolation_ratio(self) -> float:
        """Largest held-out budget / largest fitted one: beyond flags.EXTRAPOLATION_LIMIT (10×) the
        prediction is an extrapolation the study's range does not support, flagged in the report."""
        return extrapolation_ratio(self.heldout_C, np.array([self.train_C_max]))

    @property
    def rel_error(self) -> np.ndarray:
        """[h] signed relative error of the prediction."""
        return (self.predicted - self.observed) / self.observed

    @property
    def mean_abs_rel_error(self) -> float:
        """Mean |relative error| over the held-out points."""
        return float(np.mean(np.abs(self.rel_error)))


def holdout_extrapolation(
    C: np.ndarray,
    L: np.ndarray,
    *,
    N: np.ndarray | None = None,
    D: np.ndarray | None = None,
    n_holdout_budgets: int = 1,
    budget_rtol: float = 0.05,
    **fit_kwargs: Any,
) -> HoldoutResult:
    """Fit without the largest `n_holdout_budgets` budgets and predict the held-out losses.

    With only C and L the fit is `fit_power_law` (L(C)); with N and D it is `fit_chinchilla`
    (L(N, D)) evaluated at the held-out runs' (N, D).

    Args:
      C: [n] budgets (FLOPs), grouped with `budget_rtol`.  L: [n] losses.  N, D: optional [n].
      fit_kwargs: passed to the fit.
    Raises:
      FitError: fewer than n_holdout_budgets + 1 budgets, or the reduced fit fails.
    """
    c = np.asarray(C, dtype=np.float64).reshape(-1)
    y = np.asarray(L, dtype=np.float64).reshape(-1)
    groups = group_budgets(c, budget_rtol)
    n_budgets = int(groups.max()) + 1 if groups.size else 0
    if n_budgets <= n_holdout_budgets:
        raise FitError(f"{n_budgets} budget(s): cannot hold out {n_holdout_budgets} and still fit")
    held = groups >= n_budgets - n_holdout_budgets
    if (N is None) != (D is None):
        raise TypeError("holdout_extrapolation: pass both N and D, or neither")
    if N is None:
        fit = fit_power_law(c[~held], y[~held], **fit_kwargs)
        pred = fit.predict(c[held])
    else:
        n_arr = np.asarray(N, dtype=np.float64).reshape(-1)
        d_arr = np.asarray(D, dtype=np.float64).reshape(-1)
        fit = fit_chinchilla(n_arr[~held], d_arr[~held], y[~held], **fit_kwargs)
        pred = fit.predict(n_arr[held], d_arr[held])
    return HoldoutResult(
        fit=fit,
        heldout_C=c[held],
        observed=y[held],
        predicted=np.asarray(pred, dtype=np.float64),
        n_train=int((~held).sum()),
        train_C_max=float(c[~held].max()),
    )
