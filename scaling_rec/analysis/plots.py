"""Scaling-law figures (matplotlib object API, no pyplot state; PNGs via the Agg canvas).

Families (e.g. HSTU vs SASRec) share one axes with distinct colours; within a family, IsoFLOP
budgets are shades of the family's colour (light = small budget).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scaling_rec.analysis.bootstrap import BootstrapResult
from scaling_rec.analysis.fits import PowerLawFit
from scaling_rec.analysis.isoflop import IsoFlopFit
from scaling_rec.analysis.ladder import Ladder

T = TypeVar("T")

# tab10 colours and the sequential maps of the same hue, in the same order.
_FAMILY_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
_FAMILY_CMAPS = ("Blues", "Oranges", "Greens", "Reds", "Purples", "copper_r")


def family_colour(i: int) -> str:
    """Colour of the i-th family (cycles after six)."""
    return _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)]


def _indexed(curves: Mapping[str, T], families: Sequence[str] | None) -> list[tuple[int, str, T]]:
    """(colour index, family, entry) of each entry of `curves`: the family's position in `families` (every family
    of one report: a figure that leaves some out keeps the others' colours), else in `curves`."""
    order = list(families) if families is not None else list(curves)
    return [(order.index(f), f, v) for f, v in curves.items()]


def _shade(i: int, j: int, n: int) -> tuple[float, float, float, float]:
    """Shade j of n (light → dark) in family i's colour map."""
    cmap = colormaps[_FAMILY_CMAPS[i % len(_FAMILY_CMAPS)]]
    return cmap(0.4 + 0.55 * (j / max(n - 1, 1)))


@dataclasses.dataclass(frozen=True)
class LossCurve:
    """One family's loss-vs-compute data: all runs, the per-budget frontier, and the fit."""

    C: np.ndarray  # [n] FLOPs of every usable run
    L: np.ndarray  # [n]
    frontier_C: np.ndarray  # [G] the runs L(C) is fitted on
    frontier_L: np.ndarray  # [G]
    fit: PowerLawFit | None = None
    boot: BootstrapResult | None = None
    frontier_label: str = "best run per budget"  # 'runs no cheaper run beats' for the Pareto frontier


@dataclasses.dataclass(frozen=True)
class IsoFlopCurves:
    """One family's runs (budget, N, L) and its IsoFLOP fit."""

    budget: np.ndarray  # [n] FLOPs (planned)
    N: np.ndarray  # [n] parameters
    L: np.ndarray  # [n]
    iso: IsoFlopFit | None = None


def _new_figure(ncols: int = 1, width: float = 6.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _label(ax, xlabel: str, ylabel: str, title: str, legend_size: int) -> None:
    """Axis labels, title, a log-friendly grid and the legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=legend_size)


def power_law_band(boot: BootstrapResult, C: np.ndarray, ci: float | None = None) -> tuple[np.ndarray, ...]:
    """Pointwise percentile band [len(C)] of E + A·C^(−α) over the bootstrap samples."""
    s = boot.samples_table()
    curves = s["E"][:, None] + s["A"][:, None] * C[None, :] ** (-s["alpha"][:, None])
    level = boot.ci if ci is None else ci
    lo, hi = np.percentile(curves, [(1 - level) / 2 * 100, (1 + level) / 2 * 100], axis=0)
    return lo, hi


def plot_loss_vs_compute(curves: Mapping[str, LossCurve], ylabel: str, title: str = "",
                         families: Sequence[str] | None = None) -> Figure:
    """Loss vs training FLOPs (log–log): runs (faint), frontier (solid), fit and its bootstrap band. families:
    every family of the report, for colours that hold across figures (`_indexed`)."""
    fig, (ax,) = _new_figure()
    for i, family, cv in _indexed(curves, families):
        col = family_colour(i)
        ax.scatter(cv.C, cv.L, s=14, color=col, alpha=0.3, linewidths=0, label=f"{family}: all runs")
        ax.scatter(cv.frontier_C, cv.frontier_L, s=36, color=col, edgecolors="black", linewidths=0.5,
                   label=f"{family}: {cv.frontier_label}", zorder=3)
        if cv.fit is None:
            continue
        grid = np.logspace(np.log10(cv.C.min()) - 0.1, np.log10(cv.C.max()) + 0.5, 200)
        f = cv.fit
        ax.plot(grid, f.predict(grid), color=col, lw=1.8,
                label=f"{family}: {f.E:.3g} + {f.A:.3g}·C^(−{f.alpha:.3f})")
        if cv.boot is not None:
            lo, hi = power_law_band(cv.boot, grid)
            ax.fill_between(grid, lo, hi, color=col, alpha=0.18, linewidth=0,
                            label=f"{family}: {cv.boot.ci:.0%} bootstrap band")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())  # labelled minor ticks overlap within a decade
    _label(ax, "training compute C (FLOPs)", ylabel, title or f"{ylabel} vs compute", legend_size=8)
    return fig


def plot_isoflop(curves: Mapping[str, IsoFlopCurves], ylabel: str, size_label: str, title: str = "",
                 families: Sequence[str] | None = None) -> Figure:
    """Loss vs N per budget (shades of each family's colour), fitted parabolas and optima (stars).

    Both axes are logarithmic, the space the parabolas are fitted in (log L vs log N).  An optimum
    outside its budget's sampled sizes is a hollow star, drawn only within the plotted curve (0.1
    decade beyond the sampled sizes): a vertex decades away would squash every curve into a corner.
    """
    fig, (ax,) = _new_figure(width=7.6)
    for i, family, cv in _indexed(curves, families):
        budgets = np.unique(cv.budget)
        optima = {o.C: o for o in cv.iso.optima} if cv.iso is not None else {}
        for j, c in enumerate(budgets):
            col = _shade(i, j, budgets.size)
            m = cv.budget == c
            order = np.argsort(cv.N[m])
            ax.scatter(cv.N[m][order], cv.L[m][order], s=18, color=col, zorder=3)
            opt = min(optima.values(), key=lambda o, c=c: abs(np.log(o.C / c))) if optima else None
            if opt is None or abs(np.log(opt.C / c)) > 0.05:
                ax.plot(cv.N[m][order], cv.L[m][order], color=col, lw=0.8, ls=":")
                continue
            grid = np.logspace(np.log10(cv.N[m].min()) - 0.1, np.log10(cv.N[m].max()) + 0.1, 100)
            ax.plot(grid, opt.curve(grid), color=col, lw=1.4, label=f"{family} C={c:.1e}")
            if grid[0] <= opt.N_opt <= grid[-1]:
                ax.scatter([opt.N_opt], [opt.L_opt], marker="*", s=140, color="none" if opt.extrapolated else col,
                           edgecolors=col if opt.extrapolated else "black", linewidths=0.6 + opt.extrapolated,
                           zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(size_label)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "IsoFLOP curves (★ = parabola minimum; hollow: outside the sampled sizes)")
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_optimal_size(isos: Mapping[str, IsoFlopFit], size_label: str, title: str = "",
                      families: Sequence[str] | None = None) -> Figure:
    """N*(C) and D*(C) (log–log) per family with the fitted power laws N* ∝ C^a, D* ∝ C^b. The optima the laws
    are fitted on are filled; those outside their budget's sampled sizes (left out of the fit) are hollow; with
    fewer than 2 fitted optima there is no line."""
    fig, (ax_n, ax_d) = _new_figure(ncols=2, width=5.2)
    for i, family, iso in _indexed(isos, families):
        col = family_colour(i)
        c = np.array([o.C for o in iso.optima])
        inside = np.array([not o.extrapolated for o in iso.optima])
        span = c[inside] if inside.any() else c
        grid = np.logspace(np.log10(span.min()) - 0.2, np.log10(span.max()) + 0.5, 50)
        for ax, vals, pred, exp, sym in (
            (ax_n, np.array([o.N_opt for o in iso.optima]), iso.predict_N(grid), iso.a, "N*"),
            (ax_d, np.array([o.D_opt for o in iso.optima]), iso.predict_D(grid), iso.b, "D*"),
        ):
            ax.scatter(c[inside], vals[inside], color=col, s=30, edgecolors="black", linewidths=0.5, zorder=3)
            if (~inside).any():
                ax.scatter(c[~inside], vals[~inside], color="none", s=30, edgecolors=col, linewidths=1.0, zorder=3,
                           label=f"{family}: outside the sampled sizes, not fitted")
            if np.isfinite(exp):
                ax.plot(grid, pred, color=col, lw=1.5, label=f"{family}: {sym} ∝ C^{exp:.3f}")
    ax_n.set_ylabel(f"optimal {size_label}")
    ax_d.set_ylabel("optimal D (training examples)")
    for ax in (ax_n, ax_d):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Compute-optimal allocation (IsoFLOP minima)")
    return fig


def plot_ladders(ladders: Mapping[str, list[Ladder]], ylabel: str, title: str = "",
                 families: Sequence[str] | None = None) -> Figure:
    """Fitted quantity vs training FLOPs per example, one line per (family, examples seen D):
    shades of the family's colour, light = fewest examples."""
    fig, (ax,) = _new_figure()
    for i, family, lads in _indexed(ladders, families):
        for j, lad in enumerate(lads):
            ax.plot(lad.per_example, lad.values, marker="o", ms=4, lw=1.4, color=_shade(i, j, len(lads)),
                    label=f"{family}, D = {lad.D:.3g} examples")
    ax.set_xscale("log")
    _label(ax, "training FLOPs per example (C / D)", ylabel,
           title or f"{ylabel} vs compute per example,\nat fixed examples seen", legend_size=7)
    return fig


def save(fig: Figure, path: str | pathlib.Path, dpi: int = 130) -> pathlib.Path:
    """Write fig as PNG (to a temporary name, then renamed) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)
    return path
