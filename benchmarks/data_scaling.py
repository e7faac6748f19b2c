"""Writes a data-scaling study's report (experiments/hstu/data_scaling.py) under benchmarks/results/.

  python -m benchmarks.data_scaling --config=experiments/hstu/data_scaling.py:ml100k \
      --study=runs/data_scaling_ml100k --out=benchmarks/results/data_scaling_ml100k

From the study's runs: L(U) = E + A·U^(−α) on the fixed_epochs arm (U = training users, the subset's
unique training sequences), with bootstrap CIs and the fit flags of scaling_rec.analysis.flags (flat
data, a parameter on its search box's edge, a CI wider than 10×), and the equal_examples arm against
the data-constrained law of Muennighoff et al. 2023 (§3.1, eq. 5): repeated epochs count as effective
unique data D' = U + U·R*·(1 − exp(−R/R*)), R = epochs − 1, their fitted R* = 15.4. Writes report.md,
fits.json, runs.csv and provenance.json (this command, the git commit, the machine, the time).

Re-analysis of a committed report whose results store is gone: `--runs_csv=<its runs.csv>` instead of
--study refits that table with the current fits (as benchmarks.study_report does): the table is copied to
--out unchanged and provenance.json records it under `reanalysis_of` (path, sha256, the provenance it was
written with). Tables written before the `usable` / `num_items` columns: a run is usable when its status is
ok, and the chance level is the one the earlier fits.json beside the table recorded.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pandas as pd
from absl import app, flags

from benchmarks.provenance import command_line, provenance
from benchmarks.study_report import run_table_source
from scaling_rec import host_memory
from scaling_rec.analysis import fit_power_law, load_results
from scaling_rec.analysis.flags import bound_flag, flat_test
from scaling_rec.analysis.report import fit_with_ci, flag_law, identified, md_table
from scaling_rec.analysis.results import RUN_TABLE_REQUIRED, load_run_table, select_target, split_usable
from scaling_rec.errors import ResultError
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import load_analysis

R_STAR_MUENNIGHOFF = 15.4
"""R_D*, Muennighoff et al. 2023, eq. 5 fit (their §3.1): repeated data's value decays with e-folding 15.4 epochs."""
R_STAR_BOX = (0.1, 1000.0)
METRIC, RANK = "eval/test/xent", "eval/test/ndcg@10"
RUN_COLUMNS = ("run_id", "family", "status", "usable", "exclude_reason", "unique_examples", "epochs", "steps", "C", "N",
               "D", "num_items", "wall_time_s")


def effective_data(unique: np.ndarray, epochs: np.ndarray, r_star: float) -> np.ndarray:
    """D' = U + U·R*·(1 − exp(−R/R*)), R = epochs − 1 (Muennighoff et al. 2023, eq. 5); r_star = inf
    counts a repeat as fresh data (D' = U·epochs)."""
    rep = np.maximum(np.asarray(epochs, dtype=np.float64) - 1.0, 0.0)
    u = np.asarray(unique, dtype=np.float64)
    if np.isinf(r_star):
        return u * (1.0 + rep)
    return u + u * r_star * (1.0 - np.exp(-rep / r_star))


def predict_repeated(fit, epochs_fit: float, unique: np.ndarray, epochs: np.ndarray, r_star: float) -> np.ndarray:
    """L at (U, epochs) from a law L = E + A·U^(−α) fitted at `epochs_fit` epochs, reading U as effective
    data: E + A·(D'(U, epochs) / g)^(−α) with g = D'(1, epochs_fit) (so the fitted arm is reproduced)."""
    g = effective_data(np.array([1.0]), np.array([epochs_fit]), r_star)[0]
    return fit.E + fit.A * (effective_data(unique, epochs, r_star) / g) ** (-fit.alpha)


def fit_r_star(fit, epochs_fit: float, unique: np.ndarray, epochs: np.ndarray, observed: np.ndarray) -> dict:
    """R* minimising the squared log error of `predict_repeated` on the repeated runs (grid in R_STAR_BOX)."""
    grid = np.geomspace(*R_STAR_BOX, 401)
    err = [float(np.sum(np.log(predict_repeated(fit, epochs_fit, unique, epochs, r) / observed) ** 2)) for r in grid]
    r = float(grid[int(np.argmin(err))])
    return {"r_star": r, "sq_log_error": float(min(err)), "box": list(R_STAR_BOX),
            "flag": bound_flag(np.log(r), *np.log(R_STAR_BOX))}


def read_run_table(path: pathlib.Path) -> tuple[pd.DataFrame, float | None]:
    """(a committed runs.csv as `analyze` takes it, the chance level to report when the table has no num_items).

    Tables written before the `usable` column: usable when the status is ok (exclude_reason 'status=<status>'
    otherwise, as load_results flags them); the chance level then comes from the earlier fits.json beside it.
    """
    head = pd.read_csv(path, nrows=0).columns
    if "usable" in head:
        df = load_run_table(path)
    else:
        df = pd.read_csv(path, dtype={"run_id": str, "family": str, "status": str})
        missing = [c for c in RUN_TABLE_REQUIRED if c not in df.columns and c != "usable"] + \
            [c for c in ("status", "unique_examples", "epochs") if c not in df.columns]
        if missing:
            raise ResultError(f"{path}: not a data-scaling run table, missing columns {missing}")
        df["exclude_reason"] = ["" if s == "ok" else f"status={s}" for s in df["status"]]
        df["usable"] = df["exclude_reason"] == ""
    earlier = path.parent / "fits.json"
    chance = json.loads(earlier.read_text()).get("chance_xent") if "num_items" not in df and earlier.exists() else None
    return df, chance


def analyze(df: pd.DataFrame, n_boot: int) -> dict:
    """The data-scaling summary of one study's results table."""
    used, excluded = split_usable(df, select_target(df, METRIC, "none"))
    arm_a = used[used["family"] == "fixed_epochs"].sort_values("unique_examples")
    arm_b = used[used["family"] == "equal_examples"].sort_values("unique_examples")
    u, y = arm_a["unique_examples"].to_numpy(float), arm_a[METRIC].to_numpy(float)
    out: dict = {"metric": METRIC, "excluded": [{"run_id": r.run_id, "reason": r.exclude_reason}
                                                 for r in excluded.itertuples()]}
    if "num_items" in used and len(used):
        out["chance_xent"] = float(np.log(used["num_items"].max()))  # uniform over the catalogue, nats
    fit = None
    for key, saturating in (("L_of_U", True), ("L_of_U_pure", False)):
        entry, law, _ = fit_with_ci(fit_power_law, (u, y), n_boot, 0, 0.95, saturating=saturating)
        if law is not None:
            n_params = 3 if saturating else 2
            flag_law(entry, law.at_bound, flat_test(np.log(y), np.log(law.predict(u)), n_params))
        out[key] = entry
        fit = law if saturating else fit
    if fit is not None and len(arm_b):
        epochs_a = float(np.median(arm_a["epochs"]))
        ub, eb, yb = (arm_b[k].to_numpy(float) for k in ("unique_examples", "epochs", METRIC))
        out["repeated"] = {
            "epochs_fit": epochs_a, "unique": ub.tolist(), "epochs": eb.tolist(), "observed": yb.tolist(),
            "predicted": {name: predict_repeated(fit, epochs_a, ub, eb, r).tolist()
                          for name, r in (("muennighoff_r_star_15.4", R_STAR_MUENNIGHOFF),
                                          ("repeats_as_fresh", np.inf), ("repeats_worthless", 1e-9))},
            "fitted_r_star": fit_r_star(fit, epochs_a, ub, eb, yb),
        }
    return out


def render(summary: dict, runs: pd.DataFrame, title: str) -> str:
    md = [f"# Data scaling: {title}\n",
          f"Fitted quantity: **{METRIC}** (calibrated held-out next-item cross-entropy of the test split, nats "
          "per event; lower is better), with test NDCG@10 beside it. U = training users in the nested subset "
          "(all users are validated and tested).\n", "## Runs\n"]
    cols = ["family", "unique_examples", "epochs", "steps", METRIC, f"{METRIC}_se", RANK, f"{RANK}_se", "wall_time_s"]
    md.append(md_table([c.replace("eval/test/", "test ") for c in cols],
                        runs[[c for c in cols if c in runs]].values.tolist()))
    if "chance_xent" in summary:
        md.append(f"Chance level (uniform over the catalogue): xent = ln V = {summary['chance_xent']:.4g} nats.\n")
    for key, title, names in (("L_of_U", "L(U) = E + A·U^(−α)", ("E", "A", "alpha")),
                              ("L_of_U_pure", "L(U) = A·U^(−α) (E = 0: two parameters)", ("A", "alpha"))):
        md += _law_md(summary[key], f"{title}, fixed_epochs arm", names)
    rep = summary.get("repeated")
    if rep:
        md.append("## Repeated data (equal_examples arm) vs Muennighoff et al. 2023\n")
        md.append("Each run saw as many examples as the full set's run; prediction from the L(U) law above with U read "
                  "as effective data D' = U + U·R*·(1 − e^(−R/R*)), R = epochs − 1.\n")
        names = list(rep["predicted"])
        rows = [[u, ep, obs] + [rep["predicted"][n][i] for n in names]
                for i, (u, ep, obs) in enumerate(zip(rep["unique"], rep["epochs"], rep["observed"], strict=True))]
        md.append(md_table(["U", "epochs", "observed"] + [f"pred. {n}" for n in names], rows))
        fr = rep["fitted_r_star"]
        md.append(f"R* fitted to these {len(rep['unique'])} runs (least squares in ln L, no CI): {fr['r_star']:.3g} "
                  f"(Muennighoff: {R_STAR_MUENNIGHOFF})"
                  + (f" — {fr['flag'].replace('_', ' ')} of [{R_STAR_BOX[0]}, {R_STAR_BOX[1]:.0f}]: not identified"
                     if fr["flag"] else "") + ".\n")
    if summary["excluded"]:
        md.append("Excluded runs: " + "; ".join(f"{x['run_id']} ({x['reason']})" for x in summary["excluded"]) + "\n")
    return "\n".join(md)


def _law_md(e: dict, title: str, names: tuple[str, ...]) -> list[str]:
    """A fitted law's table (estimate, CI, identified? with its flags) and its flatness line."""
    out = [f"## {title}\n"]
    if "error" in e:
        return out + [f"Not fitted: {e['error']}\n"]
    params = e.get("bootstrap", {}).get("params", {})
    rows = [[k, e["fit"][k], params.get(k, {}).get("low", "–"), params.get(k, {}).get("high", "–"),
             identified(k, params.get(k, {}), e["flags"]["law"] + e["flags"]["params"][k])] for k in names]
    out.append(md_table(["parameter", "estimate", "95% CI low", "95% CI high", "identified?"], rows))
    ft = e["flat_test"]
    out.append(f"Flatness vs a constant: F = {ft['F']:.3g}, p = {ft['p_value']:.2g} "
               f"({'FLAT' if ft['flat'] else 'not flat'}); the law spans {ft['span_rel']:.3g} in ln L over "
               f"the fitted U, residual scatter {ft['scatter_rel']:.3g}.\n")
    return out


def _define_flags() -> None:
    """The command line's flags, defined only when this file runs as a script: absl flags are
    process-global, and tests import this module beside other benchmarks that define the same names."""
    flags.DEFINE_string("config", None, "Experiment file and preset the study was swept with.", required=True)
    flags.DEFINE_string("study", None, "The study directory (<workdir>/<study>).")
    flags.DEFINE_string("runs_csv", None, "Instead of --study: a committed run table (runs.csv) to refit.")
    flags.DEFINE_string("out", None, "Output directory under benchmarks/results/.", required=True)
    flags.DEFINE_integer("n_boot", 200, "Bootstrap resamples of the L(U) fit.")


def write_data_scaling_report(config_arg: str, out: pathlib.Path, n_boot: int, *, study: pathlib.Path | None = None,
                              runs_csv: pathlib.Path | None = None) -> dict:
    """report.md, fits.json, runs.csv and provenance.json of a results store (`study`) or of a committed run
    table (`runs_csv`) in `out`; returns the summary (fits.json)."""
    if (study is None) == (runs_csv is None):
        raise ValueError("give exactly one of study (a results store) and runs_csv (a committed run table)")
    prov = provenance()  # before writing: regenerating a committed report must not read as a dirty tree
    if runs_csv is not None:
        source = run_table_source(runs_csv)  # before out (maybe the table's folder) changes
        df, chance = read_run_table(runs_csv)
        summary = analyze(df, n_boot)
        if chance is not None:
            summary["chance_xent"] = chance
        summary["problems"], extra, title = [], {"reanalysis_of": source}, runs_csv.parent.name
    else:
        df, problems = load_results(study)
        summary = analyze(df, n_boot)
        summary["problems"], extra, title = [p.reason for p in problems], {}, study.name
    out.mkdir(parents=True, exist_ok=True)
    runs = df.sort_values(["family", "unique_examples"])
    if runs_csv is None:
        runs[[c for c in RUN_COLUMNS if c in runs] + sorted(c for c in runs if c.startswith("eval/"))].to_csv(
            out / "runs.csv", index=False)
    elif runs_csv.resolve() != (out / "runs.csv").resolve():
        shutil.copyfile(runs_csv, out / "runs.csv")
    atomic_write_json(out / "fits.json", summary)
    (out / "report.md").write_text(render(summary, runs, f"{config_arg} ({title})"))
    atomic_write_json(out / "provenance.json", {
        "command": command_line("benchmarks.data_scaling"), **extra,
        "analysis": load_analysis(config_arg), "num_runs": int(len(df)), **prov})
    return summary


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    out = pathlib.Path(f.out)
    summary = write_data_scaling_report(f.config, out, f.n_boot, study=pathlib.Path(f.study) if f.study else None,
                                        runs_csv=pathlib.Path(f.runs_csv) if f.runs_csv else None)
    print(json.dumps({k: v for k, v in summary.get("L_of_U", {}).get("fit", {}).items()}, default=float))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    _define_flags()
    app.run(main)
