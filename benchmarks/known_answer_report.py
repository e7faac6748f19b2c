"""Writes the report of a study on known-answer data, with the true floor beside the fitted one at its top.

  python -m benchmarks.known_answer_report --config=experiments/hstu/known_answer.py:cpu \
      --study=runs/known_answer/hstu_known_answer_cpu --out=benchmarks/results/known_answer_cpu

Does what benchmarks.study_report does (report.md, fits.json, PNGs, runs.csv, provenance.json; the fit
settings are the experiment file's get_analysis(preset)), then puts at the top of report.md the known
answer (scaling_rec/data/known_answer.py) for the quantity the runs were fitted on, the test
cross-entropy of each history's last event given the data.max_len events before it:
- the Bayes-optimal cross-entropy on the very test targets the runs were scored on (exact forward
  filter on those users: the floor the fit should find, free of the evaluation's sampling noise), and its
  expectation over 200,000 fresh histories with its standard error;
- chance (uniform over the catalogue) and the best context-free predictor (the item marginal);
- per family, the fitted floors E of L(C) and of L(N, D) with their bootstrap CIs, whether the CI holds
  the known answer, and the relative distance.
`known_answer.json` holds the same numbers. `--runs_csv=<a committed runs.csv>` instead of --study refits a
study whose results store is gone (as benchmarks.study_report does).
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from absl import app, flags

from benchmarks.study_report import write_study_report
from scaling_rec import host_memory
from scaling_rec.data import known_answer as ka
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import experiment_config

_LAWS = (("power_law", "L(C) = E + A·C^−α, compute frontier"), ("chinchilla", "L(N, D) = E + A/N^α + B/D^β"))


def study_data_config(study: pathlib.Path) -> dict[str, Any]:
    """The config.json of the study's first run (all runs of a study share their data and seed)."""
    for path in sorted((study / "runs").glob("*/config.json")):
        return json.loads(path.read_text())
    raise FileNotFoundError(f"no runs/*/config.json under {study}; run the sweep first.")


def known_answer(config: dict[str, Any]) -> dict[str, Any]:
    """The known answer for the validation cross-entropy of runs with this config (module docstring)."""
    d = config["data"]
    if d["name"] != ka.NAME:
        raise ValueError(f"study data is {d['name']!r}, not {ka.NAME!r}: there is no known answer.")
    if config["eval"].get("max_users") and config["eval"].get("users", "first") != "first":
        raise ValueError("the known answer is computed on the first eval.max_users histories: the study must "
                         "evaluate eval.users='first'")
    hmm = ka.make_hmm(d["synthetic_items"], seed=config["seed"])
    position, context = hmm.length, d["max_len"]  # leave-one-out test target: the last event
    eval_users = config["eval"]["max_users"] or d["synthetic_users"]
    items = ka.known_answer_items(hmm, min(eval_users, d["synthetic_users"]), config["seed"])
    on_eval = ka.bayes_cross_entropy_of(hmm, items, position, context)
    expected = ka.bayes_cross_entropy(hmm, position, context=context)
    return {"position": position, "context": context, "length": hmm.length, "num_items": hmm.num_items,
            "num_interests": hmm.num_interests, "eval_users": on_eval.count,
            "bayes_on_eval_targets": on_eval.mean, "bayes_on_eval_targets_se": on_eval.se,
            "bayes_expected": expected.mean, "bayes_expected_se": expected.se, "bayes_expected_samples": expected.count,
            "chance": math.log(hmm.num_items), "unigram": ka.unigram_cross_entropy(hmm)}


def floor_rows(fits: dict[str, Any], truth: float) -> list[dict[str, Any]]:
    """Per family and law: fitted E, its CI, whether the CI holds `truth`, and |E − truth| / truth."""
    rows = []
    for fam, entry in fits["families"].items():
        for law, label in _LAWS:
            boot = entry.get(law, {}).get("bootstrap", {})
            e = boot.get("params", {}).get("E")
            fit_e = entry.get(law, {}).get("fit", {}).get("E")
            if e is None or fit_e is None:
                rows.append({"family": fam, "law": label, "E": fit_e, "error": boot.get("error", "not fitted")})
                continue
            rows.append({"family": fam, "law": label, "E": fit_e, "low": e["low"], "high": e["high"],
                         "contains": bool(e["low"] <= truth <= e["high"]), "rel_error": abs(fit_e - truth) / truth})
    return rows


def header_lines(ka_info: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The report's first lines: data, known answer, chance, and the fitted floors beside it."""
    truth = ka_info["bayes_on_eval_targets"]
    lines = [
        f"**Known-answer data** (scaling_rec/data/known_answer.py: hidden-Markov interests, "
        f"{ka_info['num_interests']} interests over a Zipf catalogue of {ka_info['num_items']} items, histories of "
        f"{ka_info['length']} events, fresh histories for every training example). Fitted: `{metric}`, the "
        f"cross-entropy of each history's last event given the {ka_info['context']} events before it.\n",
        f"- True floor (Bayes-optimal predictor, exact forward filter) on the {ka_info['eval_users']:,} test "
        f"targets scored: **{truth:.4f} nats** (± {ka_info['bayes_on_eval_targets_se']:.4f} SE of those targets); "
        f"its expectation H(X_{ka_info['context'] + 1} | X_1..X_{ka_info['context']}) = "
        f"{ka_info['bayes_expected']:.4f} ± "
        f"{ka_info['bayes_expected_se']:.4f} ({ka_info['bayes_expected_samples']:,} fresh histories).",
        f"- Chance (uniform over {ka_info['num_items']} items): {ka_info['chance']:.4f} nats; best context-free "
        f"predictor (item popularity): {ka_info['unigram']:.4f} nats.",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"- {r['family']}, {r['law']}: E not estimated ({r['error']}).")
            continue
        verdict = "holds" if r["contains"] else "does NOT hold"
        lines.append(f"- {r['family']}, {r['law']}: fitted **E = {r['E']:.4f}** [{r['low']:.4f}, {r['high']:.4f}] "
                     f"(95% CI), which {verdict} the true floor; |E − true| / true = {100 * r['rel_error']:.2f}%.")
    return [*lines, ""]


def same_answer(a: dict[str, Any], b: dict[str, Any], rtol: float = 1e-9) -> bool:
    """Whether two `known_answer` dicts hold the same keys and numbers (floats to rtol)."""
    return a.keys() == b.keys() and all(math.isclose(float(a[k]), float(b[k]), rel_tol=rtol) for k in a)


def write_known_answer_report(config_arg: str, out: pathlib.Path, *, study: pathlib.Path | None = None,
                              runs_csv: pathlib.Path | None = None) -> pathlib.Path:
    """The report of `study` (a results store), or of `runs_csv` (a committed run table, refitted with the
    current analysis), into `out` with the known-answer header; returns the report.md path.

    A run table carries no run config: the known answer is then computed from the experiment's base config,
    and must equal the known_answer.json beside the table when there is one (ValueError otherwise: the
    study was run with other data settings than the experiment file now declares).
    """
    if runs_csv is not None:
        info = known_answer(experiment_config(config_arg).to_dict())
        beside = runs_csv.parent / "known_answer.json"
        if beside.exists():
            stored = json.loads(beside.read_text())["known_answer"]
            if not same_answer(stored, info):
                raise ValueError(f"{beside} was computed for other data than {config_arg} declares now: "
                                 f"{stored} vs {info}")
    paths, _ = write_study_report(config_arg, out, study=study, runs_csv=runs_csv, latest_sweep_only=True,
                                  module="benchmarks.known_answer_report")
    if study is not None:
        info = known_answer(study_data_config(study))
    fits = json.loads(paths["fits.json"].read_text())
    rows = floor_rows(fits, info["bayes_on_eval_targets"])
    report = pathlib.Path(paths["report.md"])
    report.write_text("\n".join(header_lines(info, rows, fits["target"]["label"])) + "\n" + report.read_text())
    atomic_write_json(out / "known_answer.json", {"known_answer": info, "floors": rows})
    return report


def _define_flags() -> None:
    """The command line's flags, defined only when this file runs as a script: absl flags are
    process-global, and tests import this module beside other benchmarks that define the same names."""
    flags.DEFINE_string("config", None, "Experiment file and preset the study was swept with.", required=True)
    flags.DEFINE_string("study", None, "The study directory (<workdir>/<study>), given relative.")
    flags.DEFINE_string("runs_csv", None, "Instead of --study: a committed run table (runs.csv) to refit.")
    flags.DEFINE_string("out", None, "Output directory.", required=True)


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    report = write_known_answer_report(f.config, pathlib.Path(f.out), study=pathlib.Path(f.study) if f.study else None,
                                       runs_csv=pathlib.Path(f.runs_csv) if f.runs_csv else None)
    print(f"report: {report}")


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    _define_flags()
    app.run(main)
