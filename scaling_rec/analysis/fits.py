"""Scaling-law fits: L(C) = E + A·C^(−α) and L(N, D) = E + A/N^α + B/D^β.

Both fits follow Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"),
Section 3.3 / Appendix D.2 (Approach 3): the prediction is written in log space as a log-sum-exp,

    log L̂ = LSE(a − α·log N, b − β·log D, e),   with A = exp(a), B = exp(b), E = exp(e),

and the parameters minimise the Huber loss (δ = 1e-3) of the log residuals log L̂ − log L,
with L-BFGS-B started from a grid of initialisations, the best optimum kept, inside a search box
(`_LseProblem.search_box`; an optimum on its edge is reported in the fit's `at_bound`).  The power law in
compute is the same construction with one power-law term: log L̂ = LSE(a − α·log C, e).

Units: C in FLOPs, N in parameters, D in training examples (whatever the caller passes; the fitted
A, B carry those units), L in the fitted quantity's own units (must be > 0).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import optimize

from scaling_rec.analysis.flags import bound_flag
from scaling_rec.errors import FitError

HUBER_DELTA = 1e-3
"""Huber threshold on log residuals, Hoffmann et al. 2022, Appendix D.2."""

# Hoffmann et al. 2022, D.2: α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}.
HOFFMANN_EXPONENT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
HOFFMANN_E_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
HOFFMANN_LOGCOEF_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
# The power law in C has smaller exponents in practice (recommenders: ~0.05-0.3), so its exponent
# grid is finer at the low end; the coefficient and E grids are Hoffmann's.
POWER_LAW_EXPONENT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 1.5, 2.0)

# The search box L-BFGS-B works in (`search_box`). An optimum on its edge was set by the box, not the
# data, and is flagged (`scaling_rec.analysis.flags`), never reported identified.
EXPONENT_BOX = (0.0, 5.0)
"""α, β: the loss falls with scale (α ≥ 0: a rising or flat loss puts α on the lower edge); Hoffmann's
grid stops at 2 and measured exponents of language models and recommenders are below 1."""
SCALE_BOX_DECADES = (6.0, 2.0)
"""E and each power-law term at the centre of the data, A·C̄^(−α): from 1e-6·min(L) (a term too small
for any data to see) to max(L) for E and 100·max(L) for a term (a term above every L must cancel)."""


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber loss of residuals r: r²/2 for |r| ≤ δ, δ·(|r| − δ/2) beyond (Huber 1964)."""
    abs_r = np.abs(r)
    return np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta))


# (get, set) C entry points of OpenBLAS builds (numpy/scipy wheels rename them).
_BLAS_THREAD_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


@functools.lru_cache(maxsize=1)
def _openblas_controls() -> tuple[tuple[object, object], ...]:
    """(get, set) thread-count functions of every OpenBLAS loaded in this process (Linux only)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return ()
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _BLAS_THREAD_SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                controls.append((getattr(lib, get_name), getattr(lib, set_name)))
                break
    return tuple(controls)


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run tiny L-BFGS problems with one OpenBLAS thread.

    scipy's L-BFGS-B calls BLAS on 3-5-dimensional vectors; with a multi-threaded OpenBLAS on a
    loaded machine each call pays thread wake-ups, measured here as a 45× slowdown.  The previous
    thread counts are restored on exit.
    """
    controls = _openblas_controls()
    saved = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, saved, strict=True):
            set_(n)


def check_positive(name: str, x: np.ndarray, hint: str = "Drop failed/diverged runs before fitting.") -> np.ndarray:
    """Return x as a 1-D float64 array; FitError (naming `name`, ending with `hint`) if it holds a
    non-finite or non-positive value."""
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise FitError(
            f"{name} must be finite and > 0 for a log-space fit; {int(bad.sum())} of {arr.size} "
            f"values are not (first indices {idx}, values {arr[idx].tolist()}). {hint}"
        )
    return arr


def _check_lengths(n_params: int, **arrays: np.ndarray) -> int:
    sizes = {k: v.size for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise FitError(f"arrays differ in length: {sizes}")
    n = next(iter(sizes.values()))
    if n < n_params + 1:
        raise FitError(
            f"too few points: {n} given, a fit with {n_params} parameters needs at least {n_params + 1}"
        )
    return n


def _check_spread(name: str, x: np.ndarray) -> None:
    if np.unique(x).size < 2:
        raise FitError(f"degenerate grid: all {name} are equal ({x[0]:g}); the exponent is unidentifiable")


@dataclasses.dataclass(frozen=True)
class _LseProblem:
    """log L̂ = LSE(c_k − γ_k·x_k for power terms, e); x centred at x_ref for conditioning."""

    xs: tuple[np.ndarray, ...]  # centred log inputs, one per power-law term, each [n]
    x_ref: tuple[float, ...]
    log_y: np.ndarray  # [n]
    with_e: bool
    delta: float

    @property
    def n_terms(self) -> int:
        return len(self.xs)

    def terms(self, theta_GxP: np.ndarray) -> np.ndarray:
        """Log-space terms [G, n, K(+1)] for G parameter vectors (c_1..c_K, γ_1..γ_K[, e])."""
        k = self.n_terms
        cols = [
            theta_GxP[:, i, None] - theta_GxP[:, k + i, None] * self.xs[i][None, :] for i in range(k)
        ]
        if self.with_e:
            cols.append(np.broadcast_to(theta_GxP[:, 2 * k, None], cols[0].shape))
        return np.stack(cols, axis=-1)

    def objective_grid(self, theta_GxP: np.ndarray) -> np.ndarray:
        """Sum of Huber losses [G] for every row of theta (vectorised, for grid screening)."""
        t = self.terms(theta_GxP)
        lse = np.logaddexp.reduce(t, axis=-1)
        return huber(lse - self.log_y[None, :], self.delta).sum(axis=1)

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Huber objective scaled by 1/δ² (same minimiser, O(1) values for L-BFGS) and its gradient."""
        k = self.n_terms
        x_nxk = self._x_nxk
        t_nxk = theta[None, :k] - theta[None, k : 2 * k] * x_nxk
        if self.with_e:
            t_nxk = np.concatenate([t_nxk, np.full((x_nxk.shape[0], 1), theta[2 * k])], axis=1)
        lse = np.logaddexp.reduce(t_nxk, axis=1)
        r = lse - self.log_y
        abs_r = np.abs(r)
        small = abs_r <= self.delta
        scale = 1.0 / self.delta**2
        value = np.where(small, 0.5 * r * r, self.delta * (abs_r - 0.5 * self.delta)).sum() * scale
        psi = np.clip(r, -self.delta, self.delta) * scale
        pw_nxk = psi[:, None] * np.exp(t_nxk - lse[:, None])  # Huber' × softmax weight
        grad_c = pw_nxk.sum(axis=0)
        grad_g = -(pw_nxk[:, :k] * x_nxk).sum(axis=0)
        grad = np.concatenate([grad_c[:k], grad_g, grad_c[k:]])
        return float(value), grad

    @functools.cached_property
    def _x_nxk(self) -> np.ndarray:
        return np.stack(self.xs, axis=1)

    def to_centred(self, theta_raw: np.ndarray) -> np.ndarray:
        """Map paper parameters (a = log A, α, ...) to centred ones: c = a − α·x_ref."""
        out = np.array(theta_raw, dtype=np.float64, copy=True)
        k = self.n_terms
        for i in range(k):
            out[..., i] = out[..., i] - out[..., k + i] * self.x_ref[i]
        return out

    def to_raw(self, theta_c: np.ndarray) -> np.ndarray:
        out = np.array(theta_c, dtype=np.float64, copy=True)
        k = self.n_terms
        for i in range(k):
            out[..., i] = out[..., i] + out[..., k + i] * self.x_ref[i]
        return out

    def search_box(self) -> list[tuple[float, float]]:
        """(low, high) per centred parameter (c_1..c_K, γ_1..γ_K[, e]): EXPONENT_BOX and SCALE_BOX_DECADES."""
        below, above = (d * np.log(10.0) for d in SCALE_BOX_DECADES)
        lo, hi = float(self.log_y.min()) - below, float(self.log_y.max())
        box = [(lo, hi + above)] * self.n_terms + [EXPONENT_BOX] * self.n_terms
        return box + ([(lo, hi)] if self.with_e else [])


def _power_law_data_starts(x: np.ndarray, y: np.ndarray, saturating: bool) -> np.ndarray:
    """Starts [S, P] (raw a, α[, e]) read off the data: for E0 a fraction of min(L), the line through
    (log C, log(L − E0)). Hoffmann's fixed grid has E ∈ {e^-1, …, e}; when the losses sit in a narrow
    band (e.g. 1 − NDCG ≈ 0.99) every grid start with the right E makes the power-law term vanish,
    its gradient with it, and L-BFGS stays where it started — these starts sit in the right basin."""
    rows = []
    for frac in (0.5, 0.9, 0.97, 0.99) if saturating else (0.0,):
        e0 = frac * float(np.min(y))
        slope, intercept = np.polyfit(x, np.log(y - e0), 1)
        alpha0 = float(np.clip(-slope, 1e-3, 3.0))
        rows.append([intercept, alpha0] + ([np.log(e0)] if saturating else []))
    return np.array(rows, dtype=np.float64)


def _minimise(problem: _LseProblem, grid_raw: np.ndarray, n_starts: int | None,
              always: np.ndarray | None = None) -> tuple[np.ndarray, float, tuple[str | None, ...]]:
    """L-BFGS-B in the search box from the grid's best `n_starts` points (all when None), the best point of
    each of the `n_starts` best exponent settings, and the `always` starts (every start clipped into the
    box); returns raw θ, Huber sum and, per centred parameter, its `flags.bound_flag` (None off the box's
    edges)."""
    box = problem.search_box()
    lows, highs = np.array(box).T
    grid_c = np.clip(problem.to_centred(grid_raw), lows, highs)
    if n_starts is not None and n_starts < grid_c.shape[0]:
        # Screening the grid by its objective is a cheap vectorised pass; the L-BFGS runs start
        # from the most promising initialisations only (n_starts=None runs all, as in the paper).
        order = np.argsort(problem.objective_grid(grid_c), kind="stable")
        ranks = np.union1d(np.arange(n_starts), _best_per_exponents(grid_c[order], problem.n_terms, n_starts))
        grid_c = grid_c[order[ranks]]  # in the screen's order
    if always is not None and len(always):
        grid_c = np.concatenate([np.clip(problem.to_centred(always), lows, highs), grid_c])
    best_theta, best_f = None, np.inf
    with single_blas_thread():
        for theta0 in grid_c:
            res = optimize.minimize(
                problem.value_and_grad,
                theta0,
                jac=True,
                method="L-BFGS-B",
                bounds=box,
                options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
            )
            if np.isfinite(res.fun) and res.fun < best_f:
                best_theta, best_f = res.x, float(res.fun)
    if best_theta is None:
        raise FitError("every L-BFGS start diverged to a non-finite objective; check the data's scale")
    theta_raw = problem.to_raw(best_theta)
    at_bound = tuple(bound_flag(float(v), lo, hi) for v, (lo, hi) in zip(best_theta, box, strict=True))
    return theta_raw, float(best_f * problem.delta**2), at_bound


def _best_per_exponents(sorted_c: np.ndarray, k: int, count: int) -> np.ndarray:
    """Ranks in the screened, sorted grid `sorted_c` of the best point of each of its first `count` distinct
    exponent settings (columns k..2k-1). The screen's best points alone can all lie in one basin: clipped into
    the box, points that differ only in a coefficient or E coincide, and on the Wukong-vs-DLRM study's Wukong
    runs (36 runs at fb7cf58) the 8 best started L(N, D) at one optimum with 6.6x the Huber loss of the one the
    full grid finds: an L(N, D) that a constant beat."""
    _, first = np.unique(sorted_c[:, k:2 * k], axis=0, return_index=True)
    return np.sort(first)[:count]


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """L(C) = E + A·C^(−α); `loss` is the summed Huber objective at the optimum (log space).

    at_bound: (parameter, 'at_lower_bound' | 'at_upper_bound') for each parameter the search box
    (`search_box`) set; A's box bounds the term at the data's centre, A·C̄^(−α).
    """

    E: float
    A: float
    alpha: float
    loss: float
    n_points: int
    at_bound: tuple[tuple[str, str], ...] = ()

    def predict(self, C: np.ndarray | float) -> np.ndarray:
        """Predicted L at compute C (same units as the fit's C)."""
        c = np.asarray(C, dtype=np.float64)
        return self.E + self.A * c ** (-self.alpha)

    def params(self) -> dict[str, float]:
        """The fitted parameters by name (what bootstrap resamples)."""
        return {"E": self.E, "A": self.A, "alpha": self.alpha}


@dataclasses.dataclass(frozen=True)
class ChinchillaFit:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2); `loss` = summed Huber objective;
    at_bound as in `PowerLawFit`; too_few_levels: (parameter, code) for the parameters the grid cannot
    determine (`_too_few_levels`)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    loss: float
    n_points: int
    at_bound: tuple[tuple[str, str], ...] = ()
    too_few_levels: tuple[tuple[str, str], ...] = ()

    def predict(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        """Predicted L for N parameters trained on D examples."""
        n = np.asarray(N, dtype=np.float64)
        d = np.asarray(D, dtype=np.float64)
        return self.E + self.A * n ** (-self.alpha) + self.B * d ** (-self.beta)

    def params(self) -> dict[str, float]:
        """The fitted parameters by name (what bootstrap resamples)."""
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}

    def optimal_allocation(
        self, C: np.ndarray | float, flops_per_param_example: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N*, D*) under C = k·N·D (Hoffmann et al. 2022, eq. 4, k = 6 there).

        N* = G·(C/k)^(β/(α+β)), D* = G⁻¹·(C/k)^(α/(α+β)), G = (αA / (βB))^(1/(α+β)).
        """
        c = np.asarray(C, dtype=np.float64) / flops_per_param_example
        s = self.alpha + self.beta
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        return g * c ** (self.beta / s), c ** (self.alpha / s) / g


def fit_power_law(
    C: np.ndarray,
    L: np.ndarray,
    *,
    saturating: bool = True,
    delta: float = HUBER_DELTA,
    n_starts: int | None = 8,
    exponent_grid: Sequence[float] = POWER_LAW_EXPONENT_GRID,
) -> PowerLawFit:
    """Fit L(C) = E + A·C^(−α) (or E = 0 when saturating=False) by Hoffmann-style Approach 3.

    Args:
      C: [n] compute (FLOPs) or any positive scale variable.  L: [n] positive losses.
      saturating: fit the irreducible term E; False fits the pure power law A·C^(−α).
      delta: Huber threshold on log residuals.  n_starts: L-BFGS runs from the best grid points
        (None = every grid point).  exponent_grid: initial α values.
    Raises:
      FitError: fewer than (parameters + 1) points, all C equal, or a non-positive/non-finite value.
    """
    c = check_positive("C", C)
    y = check_positive("L", L)
    n_params = 3 if saturating else 2
    n = _check_lengths(n_params, C=c, L=y)
    _check_spread("C", c)
    x = np.log(c)
    x_ref = float(np.mean(x))
    problem = _LseProblem(xs=(x - x_ref,), x_ref=(x_ref,), log_y=np.log(y), with_e=saturating, delta=delta)
    grids = [HOFFMANN_LOGCOEF_GRID, tuple(exponent_grid)] + ([HOFFMANN_E_GRID] if saturating else [])
    grid = np.array(list(itertools.product(*grids)), dtype=np.float64)
    theta, loss, at_bound = _minimise(problem, grid, n_starts, always=_power_law_data_starts(x, y, saturating))
    with np.errstate(over="ignore"):
        e = float(np.exp(theta[2])) if saturating else 0.0
        fit = PowerLawFit(E=e, A=float(np.exp(theta[0])), alpha=float(theta[1]), loss=loss, n_points=n,
                          at_bound=_named(("A", "alpha", "E"), at_bound))
    return _finite(fit)


def fit_chinchilla(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    n_starts: int | None = 8,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β exactly as Hoffmann et al. 2022, Approach 3 (App. D.2).

    Objective: Σ Huber_δ(LSE(a − α log N, b − β log D, e) − log L), δ = 1e-3, minimised with
    L-BFGS from Hoffmann's grid (α, β ∈ {0,…,2} step 0.5; e ∈ {−1,…,1} step 0.5; a, b ∈ {0,…,25}
    step 5).  To keep bootstraps affordable the 4500-point grid is screened by its objective and
    L-BFGS runs from the best `n_starts` (None = all 4500, the paper's procedure); the optimiser
    works in coordinates centred at the mean log N / log D (same objective, better conditioned).

    Args:
      N: [n] parameters.  D: [n] training examples (or tokens).  L: [n] positive losses.
    Raises:
      FitError: fewer than 6 points, all N or all D equal, N and D collinear in log space (e.g. a
        single IsoFLOP budget), or a non-positive/non-finite value.
    """
    n_arr = check_positive("N", N)
    d_arr = check_positive("D", D)
    y = check_positive("L", L)
    n = _check_lengths(5, N=n_arr, D=d_arr, L=y)
    _check_spread("N", n_arr)
    _check_spread("D", d_arr)
    xn, xd = np.log(n_arr), np.log(d_arr)
    design = np.stack([np.ones(n), xn - xn.mean(), xd - xd.mean()], axis=1)
    sv = np.linalg.svd(design, compute_uv=False)
    if sv[-1] < 1e-8 * sv[0]:
        raise FitError(
            "degenerate grid: log N and log D are collinear (e.g. one IsoFLOP budget, or D ∝ N^k), "
            "so A/N^α and B/D^β cannot be separated; add runs at other budgets or data sizes"
        )
    xn_ref, xd_ref = float(xn.mean()), float(xd.mean())
    problem = _LseProblem(
        xs=(xn - xn_ref, xd - xd_ref), x_ref=(xn_ref, xd_ref), log_y=np.log(y), with_e=True, delta=delta
    )
    # Parameter order: (a, b, α, β, e).
    grid = np.array(
        list(
            itertools.product(
                HOFFMANN_LOGCOEF_GRID,
                HOFFMANN_LOGCOEF_GRID,
                HOFFMANN_EXPONENT_GRID,
                HOFFMANN_EXPONENT_GRID,
                HOFFMANN_E_GRID,
            )
        ),
        dtype=np.float64,
    )
    theta, loss, at_bound = _minimise(problem, grid, n_starts)
    with np.errstate(over="ignore"):
        fit = ChinchillaFit(E=float(np.exp(theta[4])), A=float(np.exp(theta[0])), B=float(np.exp(theta[1])),
                            alpha=float(theta[2]), beta=float(theta[3]), loss=loss, n_points=n,
                            at_bound=_named(("A", "B", "alpha", "beta", "E"), at_bound),
                            too_few_levels=_too_few_levels(n_arr, d_arr))
    return _finite(fit)


MIN_LEVELS = 3
"""Distinct values of N (of D) that A/N^α (B/D^β) needs beside E: with 2, the law's N side is two
numbers for three unknowns (E, A, α), and every α on a ridge fits exactly (an audit found α = 0.25, 0.34,
1 and 3 with the same zero loss)."""


def _too_few_levels(n_arr: np.ndarray, d_arr: np.ndarray) -> tuple[tuple[str, str], ...]:
    """('A', 'too_few_sizes'), ('alpha', …), ('E', …) when N takes fewer than MIN_LEVELS distinct values, and
    ('B', 'too_few_data_sizes'), ('beta', …), ('E', …) likewise for D."""
    out: list[tuple[str, str]] = []
    for arr, names, code in ((n_arr, ("A", "alpha", "E"), "too_few_sizes"),
                             (d_arr, ("B", "beta", "E"), "too_few_data_sizes")):
        if np.unique(arr).size < MIN_LEVELS:
            out += [(k, code) for k in names]
    return tuple(out)


def _named(names: tuple[str, ...], flags: tuple[str | None, ...]) -> tuple[tuple[str, str], ...]:
    """(name, flag) for the parameters with a bound flag (the centred parameters, in `_minimise` order)."""
    return tuple((k, f) for k, f in zip(names, flags, strict=False) if f is not None)


def _finite(fit: PowerLawFit | ChinchillaFit) -> PowerLawFit | ChinchillaFit:
    """The fit, or FitError when a parameter overflowed: the optimum ran off to a coefficient beyond
    float range (e.g. A = exp(800) with α = 60), which the data cannot determine and which predicts NaN."""
    bad = [k for k, v in fit.params().items() if not np.isfinite(v)]
    if bad:
        raise FitError(f"the fit ran off to non-finite {', '.join(bad)} ({fit.params()}): the data do not "
                       "determine this law")
    return fit
