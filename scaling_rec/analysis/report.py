"""Analyse a results store per model family and write fits.json, report.md and PNG plots.

Per family: the power law L(C) = E + A·C^(−α) on the best run per budget (the compute frontier),
the Chinchilla law L(N, D) on every usable run (Hoffmann et al. 2022, Approach 3), IsoFLOP optima
with N* ∝ C^a, D* ∝ C^b (Approach 2), CIs for all of them (bootstrap for the two laws, in the entry's
'bootstrap'; t-intervals of the IsoFLOP slopes, in its 'interval'), and the error of each law when
fitted without the largest budget and asked to predict it.  Optional W&B summary run.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scaling_rec.analysis import flags, plots
from scaling_rec.analysis.bootstrap import BootstrapResult, bootstrap, holdout_extrapolation
from scaling_rec.analysis.fits import EXPONENT_BOX, fit_chinchilla, fit_power_law
from scaling_rec.analysis.isoflop import IsoFlopFit, compute_frontier, isoflop_optima, pareto_frontier
from scaling_rec.analysis.ladder import find_ladders
from scaling_rec.analysis.results import ResultProblem, TargetChoice, load_results, select_target, split_usable
from scaling_rec.errors import FitError, NoUsableRunError


def _fit_dict(fit: Any) -> dict[str, Any]:
    """JSON-able scalar fields of a fit dataclass."""
    return {
        f.name: getattr(fit, f.name)
        for f in dataclasses.fields(fit)
        if isinstance(getattr(fit, f.name), int | float | str | bool)
    }


def _boot_dict(res: BootstrapResult) -> dict[str, Any]:
    return {
        "ci": res.ci,
        "n_boot": res.n_boot,
        "n_failed": res.n_failed,
        "params": {k: {"estimate": p.estimate, "low": p.low, "high": p.high} for k, p in res.params.items()},
    }


def fit_with_ci(fit_fn: Any, arrays: tuple[np.ndarray, ...], n_boot: int, seed: int, ci: float,
                **kw: Any) -> tuple[dict[str, Any], Any, BootstrapResult | None]:
    """{'fit': …, 'bootstrap': …} or {'error': why}; the fit and bootstrap objects (or None)."""
    try:
        fit = fit_fn(*arrays, **kw)
    except FitError as e:
        return {"error": str(e)}, None, None
    out: dict[str, Any] = {"fit": _fit_dict(fit)}
    boot = None
    if n_boot > 0:
        boot_kw = {**kw, "n_starts": 4} if fit_fn in (fit_power_law, fit_chinchilla) else kw
        try:
            boot = bootstrap(fit_fn, *arrays, n_boot=n_boot, seed=seed, ci=ci, **boot_kw)
            out["bootstrap"] = {**_boot_dict(boot), "resampled": "points"}
        except FitError as e:
            out["bootstrap"] = {"error": str(e)}
    return out, fit, boot


def _holdout_dicts(c_front: np.ndarray, l_front: np.ndarray, used: pd.DataFrame, y: np.ndarray,
                   rtol: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # The saturating law has 3 parameters (needs 4 training budgets); with fewer, the pure power law.
    saturating = c_front.size - 1 >= 4
    attempts = {
        "power_law": lambda: holdout_extrapolation(c_front, l_front, budget_rtol=rtol, saturating=saturating),
        "chinchilla": lambda: holdout_extrapolation(
            used["budget"].to_numpy(float), y, N=used["N"].to_numpy(float), D=used["D"].to_numpy(float),
            budget_rtol=rtol),
    }
    for name, run in attempts.items():
        try:
            ho = run()
        except FitError as e:
            out[name] = {"error": str(e)}
            continue
        out[name] = {
            "law": ("saturating" if saturating else "pure (E=0)") if name == "power_law" else "L(N, D)",
            "n_train": ho.n_train,
            "heldout_C": ho.heldout_C.tolist(),
            "observed": ho.observed.tolist(),
            "predicted": ho.predicted.tolist(),
            "rel_error": ho.rel_error.tolist(),
            "mean_abs_rel_error": ho.mean_abs_rel_error,
            "extrapolation_ratio": ho.extrapolation_ratio,
            "flags": ["extrapolation"] if flags.is_extrapolation(ho.extrapolation_ratio) else [],
        }
    return out


# Parameters that must be > 0 (their CI must not reach 0, and its ends must lie within 10×); the
# IsoFLOP log10 coefficients are judged by their CI's width in decades instead.
POSITIVE = ("E", "A", "B", "alpha", "beta", "a", "b")
# The fitted laws' exponents, searched in fits.EXPONENT_BOX: a CI end on its edge is the box's, not the data's.
BOXED_EXPONENTS = ("alpha", "beta")


def _param_flags(name: str, ci: dict[str, float]) -> list[str]:
    """CI flags of one parameter (see `scaling_rec.analysis.flags`)."""
    if name.startswith("log10_"):
        codes = flags.ci_flags(ci, positive=False)
        if not codes and ci["high"] - ci["low"] > np.log10(flags.CI_RATIO_LIMIT):
            codes = ["ci_wide"]
        return codes
    codes = flags.ci_flags(ci, positive=name in POSITIVE)
    if name in BOXED_EXPONENTS and "ci_reaches_zero" not in codes:
        codes += [c for c in (flags.ci_bound_flag(ci, *EXPONENT_BOX),) if c]
    return codes


def ci_block(entry: dict[str, Any]) -> dict[str, Any]:
    """A fitted law's interval block: 'bootstrap' (power law, Chinchilla: percentile intervals of refits on
    resampled points) or 'interval' (IsoFLOP: t-intervals of the slopes); {} when it has neither."""
    return entry.get("bootstrap") or entry.get("interval") or {}


def flag_law(entry: dict[str, Any], fit_codes: tuple[tuple[str, str], ...] = (),
             flat: flags.FlatTest | None = None) -> None:
    """Add 'flat_test', 'flags' {'law': […], 'params': {name: […]}} and 'identified' {name: bool | None}
    to a fitted law's entry: a parameter is identified only without any flag (None: no CI, no flag).
    fit_codes: (parameter, code) pairs the fit itself raised (a bound hit, too few sizes), any number
    per parameter."""
    law_codes = ["flat"] if flat is not None and flat.flat else []
    if flat is not None:
        entry["flat_test"] = flat.to_dict()
    boot = ci_block(entry).get("params", {})
    per_param: dict[str, list[str]] = {}
    ident: dict[str, bool | None] = {}
    for k, v in entry["fit"].items():
        if not isinstance(v, float) or k == "loss":
            continue
        codes = ["undefined"] if not np.isfinite(v) else list(dict.fromkeys(c for name, c in fit_codes if name == k))
        codes += [c for c in _param_flags(k, boot.get(k, {})) if c not in codes and np.isfinite(v)]
        per_param[k] = codes
        hard = law_codes + [c for c in codes if c != "no_ci"]
        ident[k] = False if hard else (None if "no_ci" in codes else True)
    entry["flags"] = {"law": law_codes, "params": per_param}
    entry["identified"] = ident


FRONTIERS = ("budget", "pareto")


def isoflop_interval(iso: IsoFlopFit, ci: float) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """The IsoFLOP entry's 'interval' block (t-intervals of a and b, `IsoFlopFit.intervals`) and the fit codes
    for flag_law: with 2 interior optima a and b exist but have no interval ('too_few_optima': not
    identified; a bootstrap over 2 budgets gave them a zero-width one)."""
    try:
        bounds = iso.intervals(ci)
    except FitError as e:
        codes = (("a", "too_few_optima"), ("b", "too_few_optima")) if iso.n_interior == 2 else ()
        return {"error": str(e)}, codes
    return {"ci": ci, "method": "t-interval of the least-squares slope over the interior optima",
            "df": iso.n_interior - 2,
            "params": {k: {"estimate": getattr(iso, k), "low": lo, "high": hi} for k, (lo, hi) in bounds.items()}}, ()


def analyze_family(df: pd.DataFrame, target: TargetChoice, *, n_boot: int = 200, seed: int = 0,
                   ci: float = 0.95, budget_rtol: float = 0.05, frontier: str = "budget") -> dict[str, Any]:
    """All fits of one family's rows; returns the JSON summary plus plotting objects under '_plot'.

    frontier: the points L(C) is fitted on: 'budget' = the best run of each planned budget (IsoFLOP
    grids), 'pareto' = the runs no cheaper run beats (studies where every run has its own C).
    The rows are put in one order (C, N, D, run_id) first: the bootstrap resamples row positions, so the
    same runs read from a store and from its run table (sorted otherwise) would get different intervals.
    """
    if frontier not in FRONTIERS:
        raise FitError(f"frontier={frontier!r}; use one of {FRONTIERS}")
    df = df.sort_values([k for k in ("C", "N", "D", "run_id") if k in df], kind="stable")
    used, excluded = split_usable(df, target)
    y = target.values(used)
    summary: dict[str, Any] = {
        "points": {
            "used": int(len(used)),
            "excluded": [{"run_id": r.run_id, "reason": r.exclude_reason} for r in excluded.itertuples()],
        }
    }
    c = used["C"].to_numpy(float)
    if not len(used):
        c_front, l_front = np.array([]), np.array([])
    elif frontier == "pareto":
        c_front, l_front = pareto_frontier(c, y)
    else:
        c_front, l_front = compute_frontier(c, y, budget_rtol, budgets=used["budget"].to_numpy(float))
    summary["power_law"], pl_fit, pl_boot = fit_with_ci(fit_power_law, (c_front, l_front), n_boot, seed, ci)
    if pl_fit is not None:
        flag_law(summary["power_law"], pl_fit.at_bound,
                 flags.flat_test(np.log(l_front), np.log(pl_fit.predict(c_front)), len(pl_fit.params())))
    summary["power_law"]["on"] = (f"the {c_front.size} runs no cheaper run beats (Pareto frontier) of {len(used)}"
                                  if frontier == "pareto" else f"best run of each of {c_front.size} budgets")
    nd = (used["N"].to_numpy(float), used["D"].to_numpy(float), y)
    summary["chinchilla"], ch_fit, _ = fit_with_ci(fit_chinchilla, nd, n_boot, seed, ci)
    if ch_fit is not None:
        flag_law(summary["chinchilla"], ch_fit.at_bound + ch_fit.too_few_levels,
                 flags.flat_test(np.log(nd[2]), np.log(ch_fit.predict(*nd[:2])), len(ch_fit.params())))
        s = ch_fit.alpha + ch_fit.beta
        summary["chinchilla"]["allocation_exponents"] = {
            "a": ch_fit.beta / s if s > 0 else float("nan"), "b": ch_fit.alpha / s if s > 0 else float("nan"),
            "identified": bool(summary["chinchilla"]["identified"]["alpha"]
                               and summary["chinchilla"]["identified"]["beta"])}
    iso_arrays = (used["budget"].to_numpy(float), *nd[:2], y)
    summary["isoflop"], iso, _ = fit_with_ci(isoflop_optima, iso_arrays, 0, seed, ci, budget_rtol=budget_rtol,
                                             metric=target.column, transform=target.transform)
    if iso is not None:
        summary["isoflop"]["interval"], iso_codes = isoflop_interval(iso, ci)
        flag_law(summary["isoflop"], iso_codes, flat=iso.flat)
        summary["isoflop"]["optima"] = [
            {k: v for k, v in dataclasses.asdict(o).items() if k != "coeffs"} for o in iso.optima
        ]
        summary["isoflop"]["skipped"] = [{"C": cb, "reason": why, "flag": code} for cb, why, code in iso.skipped]
    summary["holdout"] = _holdout_dicts(c_front, l_front, used, y, budget_rtol)
    for law, h in summary["holdout"].items():  # a flat law's holdout error measures a constant
        if "flat" in summary[law].get("flags", {}).get("law", []) and "flags" in h:
            h["flags"].append("flat")
    ladders = find_ladders(used, y, rtol=budget_rtol)
    summary["ladders"] = [lad.to_dict() for lad in ladders]
    summary["_plot"] = {
        "ladders": ladders,
        "loss": plots.LossCurve(c, y, c_front, l_front, pl_fit, pl_boot,
                                frontier_label="runs no cheaper run beats" if frontier == "pareto"
                                else "best run per budget"),
        "iso": plots.IsoFlopCurves(used["budget"].to_numpy(float), nd[0], y, iso),
    }
    return summary


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_LAW_TITLES = {
    "power_law": "L(C) = E + A·C^(−α) on the compute frontier",
    "chinchilla": "L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Approach 3)",
    "isoflop": "IsoFLOP: N* ∝ C^a, D* ∝ C^b (Hoffmann et al. 2022, Approach 2)",
}


def identified(name: str, ci: dict[str, float], codes: list[str] | tuple[str, ...] = ()) -> str:
    """'yes', or 'no: ' and why (the law's and the parameter's flags, `scaling_rec.analysis.flags`), or
    '–' without a CI and without a flag.  Without `codes` the CI alone decides: an exponent or scale
    whose interval reaches 0, or whose ends differ by more than 10×, is not identified."""
    all_codes = list(codes) or _param_flags(name, ci)
    if all_codes == ["no_ci"]:
        return "–"
    words = [flags.describe(c, ci) for c in all_codes if c != "no_ci"]
    return "no: " + "; ".join(words) if words else "yes"


def _law_section(law: str, entry: dict[str, Any]) -> list[str]:
    out = [f"#### {_LAW_TITLES[law]}\n"]
    if "error" in entry:
        return out + [f"Not fitted: {entry['error']}\n"]
    boot = ci_block(entry)
    params = boot.get("params", {})
    fl = entry.get("flags", {"law": [], "params": {}})
    rows = [
        [k, v, params.get(k, {}).get("low", "–"), params.get(k, {}).get("high", "–"),
         identified(k, params.get(k, {}), fl["law"] + fl["params"].get(k, [])) if np.isfinite(v)
         else "no: undefined"]
        for k, v in entry["fit"].items()
        if isinstance(v, float) and k != "loss"
    ]
    ci_label = f"{boot['ci']:.0%} CI" if "ci" in boot else "CI"
    out.append(md_table(["parameter", "estimate", f"{ci_label} low", f"{ci_label} high", "identified?"], rows))
    notes = [f"{entry['fit'].get('n_points', '?')} points"]
    if "on" in entry:
        notes.append(entry["on"])
    if "error" in boot:
        notes.append(f"no CI: {boot['error']}")
    elif "n_boot" in boot:
        notes.append(f"{boot['n_boot']} bootstrap resamples of {boot.get('resampled', 'points')}, "
                     f"{boot['n_failed']} unfittable")
    elif boot:
        notes.append(f"CIs: {boot['method']} ({boot['df']} df)")
    if "n_interior" in entry["fit"]:
        notes.append(f"a, b fitted on the {entry['fit']['n_interior']} optima inside their budgets' sampled "
                     "sizes (extrapolated ones excluded; fewer than 2 leave a, b undefined)")
    if "allocation_exponents" in entry:
        ae = entry["allocation_exponents"]
        notes.append(f"implied N* ∝ C^{ae['a']:.3f}, D* ∝ C^{ae['b']:.3f} (eq. 4)"
                     + ("" if ae["identified"] else ", NOT identified: α or β is not"))
    out.append("; ".join(notes) + ".\n")
    if "flat_test" in entry:
        out.append(f"Flatness ({'pooled IsoFLOP surface' if 'n_interior' in entry['fit'] else 'this law'} "
                   f"vs a constant, in ln L): {flags.FlatTest(**entry['flat_test']).describe()}.\n")
    if entry.get("optima"):
        out.append(md_table(
            ["budget C", "sizes", "N*", "D*", "L*", "extrapolated"],
            [[o["C"], o["n_sizes"], o["N_opt"], o["D_opt"], o["L_opt"], o["extrapolated"]]
             for o in entry["optima"]]))
    for sk in entry.get("skipped", []):
        out.append(f"- budget {sk['C']:.3g} skipped ({sk['flag'].replace('_', ' ')}): {sk['reason']}\n")
    return out


def _ladder_section(summary: dict[str, Any]) -> list[str]:
    rows = [[fam, lad["D"], " → ".join(f"{v:.4g}" for v in lad["values"]),
             f"{lad['flops_per_example'][0]:.2g} … {lad['flops_per_example'][-1]:.2g}", lad["best_size"],
             lad["last_gain"], f"{lad['top_decade_slope']:.3g} ({lad['top_decade_rungs']} rungs)"]
            for fam, s in summary["families"].items() for lad in s.get("ladders", [])]
    if not rows:
        return []
    return ["## Fixed-length ladders: the fitted quantity vs compute per example\n",
            "Runs of one family that saw the same examples D at >= 3 sizes (scaling_rec.analysis.ladder). "
            "last gain = best smaller rung − largest rung (> 0: the largest still improves); top-decade "
            "slope = change per 10× FLOPs per example over the rungs within 10× of the largest "
            "(< 0: still falling).\n",
            md_table(["family", "D (examples)", "values, small → large", "FLOPs/example", "best size",
                       "last gain", "top-decade slope"], rows)]


def render_markdown(summary: dict[str, Any], pngs: list[str]) -> str:
    """report.md: fitted quantity, points used/excluded and why, fits with CIs, holdout errors."""
    t = summary["target"]
    md = [
        f"# Scaling-law report: {', '.join(summary['studies']) or summary['source']}\n",
        f"Source: `{summary['source']}`.  Fitted quantity: **{t['label']}** ({t['reason']}).  "
        f"N = {summary['size']}; C = training FLOPs spent; D = training examples seen.\n",
    ]
    if summary["problems"]:
        md.append("## Unreadable or partial results\n")
        md.append(md_table(["path", "problem"], [[p["path"], p["reason"]] for p in summary["problems"]]))
    md.append("## Points\n")
    rows = []
    for fam, s in summary["families"].items():
        reasons: dict[str, int] = {}
        for e in s["points"]["excluded"]:
            reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        why = "; ".join(f"{n}× {r}" for r, n in reasons.items()) or "–"
        rows.append([fam, s["points"]["used"], len(s["points"]["excluded"]), why])
    md.append(md_table(["family", "used", "excluded", "why excluded"], rows))
    md.append("## Fits\n")
    for fam, s in summary["families"].items():
        md.append(f"### {fam}\n")
        for law in ("power_law", "chinchilla", "isoflop"):
            md += _law_section(law, s[law])
    md += _ladder_section(summary)
    md.append("## Holdout extrapolation (fit without the largest budget, predict it)\n")
    rows = []
    for fam, s in summary["families"].items():
        for law, h in s["holdout"].items():
            if "error" in h:
                rows.append([fam, law, "–", "–", "–", f"not fitted: {h['error']}"])
            else:
                ratio = h["extrapolation_ratio"]
                reach = (f"{ratio:.3g}× — EXTRAPOLATION beyond {flags.EXTRAPOLATION_LIMIT:.0f}× the largest fitted "
                         "budget: not a test of the law" if "extrapolation" in h["flags"] else f"{ratio:.3g}×")
                err = f"{h['mean_abs_rel_error']:.2%}"
                if "flat" in h["flags"]:
                    err += " (flat data: a constant predicts as well; not evidence of a law)"
                rows.append([fam, f"{law} ({h['law']})", h["n_train"], len(h["observed"]), reach, err])
    md.append(md_table(["family", "law", "train points", "held out", "held-out C / largest fitted C",
                         "mean abs rel. error"], rows))
    md.append("## Plots\n")
    md += [f"![{p}]({p})\n" for p in pngs]
    return "\n".join(md)


def _write_json(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    tmp.replace(path)


def write_report(
    results: str | pathlib.Path | pd.DataFrame,
    out_dir: str | pathlib.Path,
    *,
    metric: str | None = None,
    transform: str = "auto",
    size: str = "n_dense",
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    budget_rtol: float = 0.05,
    frontier: str = "budget",
    problems: list[ResultProblem] | None = None,
    use_wandb: bool = False,
    wandb_project: str = "scaling_rec",
    latest_sweep_only: bool = False,
    source: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, pathlib.Path]:
    """Fit every family in a results store and write fits.json, report.md and PNGs to out_dir.

    Args:
      results: a study directory (see `load_results`) or an already loaded DataFrame.
      metric, transform: the fitted quantity (see `select_target`); recorded in both outputs.
      size: 'n_dense' or 'n_total' as N (ignored for a DataFrame, whose N column is used).
      n_boot, seed, ci: bootstrap settings (n_boot=0: no bootstrap; the IsoFLOP t-intervals, which cost
        nothing, are computed anyway).  use_wandb: also log to a W&B summary run.
      frontier: 'budget' or 'pareto', the points L(C) is fitted on (see `analyze_family`).
      latest_sweep_only: exclude the runs the study's latest sweep did not name (see `load_results`).
      source: where a DataFrame's rows came from (e.g. the run table `load_run_table` read), for the report's
        'Source' line; ignored for a study directory.
      progress: called with one line per family before its fits (a 400-resample study takes a minute).
    Returns:
      {'fits.json': path, 'report.md': path, '<plot>.png': path, …}.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = source or "DataFrame"
    if isinstance(results, pd.DataFrame):
        df, problems = results, list(problems or [])
    else:
        source = str(results)
        df, problems = load_results(results, size=size, latest_sweep_only=latest_sweep_only)
    if not df.empty:
        df = df.assign(**{k: df[k] if k in df else v for k, v in (("family", "all"), ("exclude_reason", ""))})
        if "usable" in df:  # a runs.csv keeps `usable` without the reason: its unusable rows stay out of the fits
            unusable = ~df["usable"].astype(bool) & (df["exclude_reason"].fillna("").astype(str) == "")
            df.loc[unusable, "exclude_reason"] = "flagged usable=False"

    if df.empty:
        raise FitError(f"no readable results in {source}; problems: {[p.reason for p in problems][:5]}")
    target = select_target(df, metric, transform)
    families = {str(f): g for f, g in df.groupby("family", sort=True)}
    fams = {}
    for i, (f, g) in enumerate(families.items()):
        if progress is not None:
            progress(f"analyze: family {i + 1}/{len(families)} {f!r}: {len(g)} runs, {n_boot} bootstrap resamples")
        fams[f] = analyze_family(g, target, n_boot=n_boot, seed=seed, ci=ci, budget_rtol=budget_rtol,
                                 frontier=frontier)
    plot_objs = {f: s.pop("_plot") for f, s in fams.items()}
    size_label = "N_dense (non-embedding parameters)" if size == "n_dense" else "N (dense + embedding)"
    summary = {
        "source": source,
        "studies": sorted(df["study"].astype(str).unique().tolist()) if "study" in df else [],
        "target": {**dataclasses.asdict(target), "label": target.label},
        "size": size,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "ci": ci},
        "problems": [dataclasses.asdict(p) for p in problems],
        "families": fams,
    }
    paths = {"fits.json": out_dir / "fits.json", "report.md": out_dir / "report.md"}
    _write_json(paths["fits.json"], summary)
    with_data = {f: p for f, p in plot_objs.items() if p["loss"].C.size}
    order = sorted(plot_objs)  # one colour per family in every figure, whichever families a figure leaves out
    figs = {}
    if with_data:  # families without a usable run are in the tables only
        figs["loss_vs_compute.png"] = plots.plot_loss_vs_compute(
            {f: p["loss"] for f, p in with_data.items()}, target.label, families=order)
        figs["isoflop.png"] = plots.plot_isoflop({f: p["iso"] for f, p in with_data.items()}, target.label,
                                                 size_label, families=order)
    ladders = {f: p["ladders"] for f, p in plot_objs.items() if p["ladders"]}
    if ladders:
        figs["ladders.png"] = plots.plot_ladders(ladders, target.label, families=order)
    isos = {f: p["iso"].iso for f, p in plot_objs.items() if p["iso"].iso is not None}
    if isos:
        figs["optimal_size.png"] = plots.plot_optimal_size(isos, size_label, families=order)
    for name, fig in figs.items():
        paths[name] = plots.save(fig, out_dir / name)
    tmp = paths["report.md"].with_name("report.md.tmp")
    tmp.write_text(render_markdown(summary, [n for n in figs]))
    tmp.replace(paths["report.md"])
    if not any(s["points"]["used"] for s in fams.values()):  # the report lists why; the caller must not read "done"
        reasons = collections.Counter(e["reason"] for s in fams.values() for e in s["points"]["excluded"])
        shown = "; ".join(f"{n}x {why}" for why, n in reasons.most_common(3))
        raise NoUsableRunError(f"no usable run in {source}: {len(df)} runs, none fitted ({shown}); "
                               f"{paths['report.md']} lists every run's reason")
    if use_wandb:
        log_to_wandb(summary, {n: paths[n] for n in figs}, out_dir, project=wandb_project)
    return paths


def fit_table_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """[family, law, parameter, estimate, ci_low, ci_high] for every fitted parameter."""
    rows = []
    for fam, s in summary["families"].items():
        for law in ("power_law", "chinchilla", "isoflop"):
            entry = s.get(law, {})
            boot = ci_block(entry).get("params", {})
            fit = entry.get("fit", {})
            for k, v in fit.items():
                if k in ("loss", "n_points") or not isinstance(v, float):
                    continue
                ci_ = boot.get(k, {})
                rows.append([fam, law, k, v, ci_.get("low", float("nan")), ci_.get("high", float("nan"))])
    return rows


def log_to_wandb(summary: dict[str, Any], pngs: dict[str, pathlib.Path], out_dir: pathlib.Path,
                 project: str = "scaling_rec") -> pathlib.Path:
    """Log the fit table and plots to one W&B run (group = study); offline unless WANDB_MODE says.

    Returns the run's local directory (under out_dir/wandb).
    """
    import wandb

    study = "+".join(summary["studies"]) or "analysis"
    run = wandb.init(
        project=project,
        group=study,
        name=f"analysis-{study}",
        job_type="analysis",
        dir=str(out_dir),
        mode=os.environ.get("WANDB_MODE", "offline"),
        config={"target": summary["target"], "size": summary["size"], "bootstrap": summary["bootstrap"]},
        reinit="finish_previous",
    )
    try:
        table = wandb.Table(columns=["family", "law", "parameter", "estimate", "ci_low", "ci_high"],
                            data=fit_table_rows(summary))
        run.log({"fits": table, **{f"plots/{n.removesuffix('.png')}": wandb.Image(str(p))
                                   for n, p in pngs.items()}})
        for fam, s in summary["families"].items():
            for law in ("power_law", "chinchilla", "isoflop"):
                for k, v in s.get(law, {}).get("fit", {}).items():
                    if isinstance(v, float):
                        run.summary[f"{fam}/{law}/{k}"] = v
        run_dir = pathlib.Path(run.dir).parent
    finally:
        run.finish()
    return run_dir
