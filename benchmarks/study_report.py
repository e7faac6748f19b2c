"""Writes a finished study's report under benchmarks/results/<name>/, with the raw run table and provenance.

  python -m benchmarks.study_report --config=experiments/wukong/scaling.py:cpu \
      --study=runs/wukong/wukong_scaling --out=benchmarks/results/wukong_scaling_cpu

The fit settings are the experiment file's `get_analysis(preset)` (the same flags launch.sweep passes
to launch.analyze), extra ones may follow as --analysis_flags. Writes into --out: report.md, fits.json
and the PNGs (scaling_rec.analysis.write_report), runs.csv (one row per run: identity, C, N, D, status,
wall time and every eval metric) and provenance.json (this command, the sweep's source, git commit,
machine, time).

Re-analysis of a committed study whose results store is gone: `--runs_csv=<its runs.csv>` instead of
--study refits that table with the current analysis (`scaling_rec.analysis.load_run_table`); the table is
copied to --out unchanged (kept when --out is its folder) and provenance.json records, under
`reanalysis_of`, the table's path and sha256 and the provenance it was written with (the sweep's
commit, machine and time). The fit settings are then the ones that report used (its provenance's
`analysis`: the same question asked under the current rules; the experiment file's when it recorded none),
with --analysis_flags over them.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from absl import app, flags

from benchmarks.provenance import command_line, portable_path, provenance
from scaling_rec.analysis import load_results, load_run_table, write_report
from scaling_rec.analysis.results import STALE_REASON
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import load_analysis

_RUN_COLUMNS = ("run_id", "study", "family", "model_family", "size", "status", "usable", "exclude_reason", "budget",
                "C", "N", "D", "wall_time_s", "steps", "epochs")


def run_table_source(runs_csv: pathlib.Path) -> dict[str, Any]:
    """What a re-analysis read: the table's portable path, its sha256, and the provenance.json beside it (the
    command, commit, machine and time of the report that wrote the table; {} when there is none)."""
    beside = runs_csv.parent / "provenance.json"
    earlier = json.loads(beside.read_text()) if beside.exists() else {}
    if "reanalysis_of" in earlier:  # a re-analysis of a re-analysis names the sweep's report, not the one between
        earlier = earlier["reanalysis_of"].get("earlier_provenance", {})
    return {"runs_csv": portable_path(str(runs_csv.resolve())),
            "sha256": hashlib.sha256(runs_csv.read_bytes()).hexdigest(), "earlier_provenance": earlier}


def write_study_report(config_arg: str, out: pathlib.Path, *, study: pathlib.Path | None = None,
                       runs_csv: pathlib.Path | None = None, analysis_overrides: Mapping[str, str] | None = None,
                       latest_sweep_only: bool = False, module: str = "benchmarks.study_report",
                       ) -> tuple[dict[str, pathlib.Path], pd.DataFrame]:
    """The report of a results store (`study`) or of a committed run table (`runs_csv`) into `out`, with runs.csv
    and provenance.json (its command names `module`).

    latest_sweep_only: a store's runs its latest sweep did not name stay out of the fits and of runs.csv.
    Returns write_report's paths and the run table written.
    """
    if (study is None) == (runs_csv is None):
        raise ValueError("give exactly one of study (a results store) and runs_csv (a committed run table)")
    source = run_table_source(runs_csv) if runs_csv is not None else None  # before out (maybe its folder) changes
    earlier = source["earlier_provenance"].get("analysis") if source else None
    s = {**(load_analysis(config_arg) if earlier is None else earlier), **dict(analysis_overrides or {})}
    settings = {"metric": s.get("metric"), "transform": s.get("transform", "auto"),
                "n_boot": int(s.get("n_boot", 200)), "frontier": s.get("frontier", "budget")}
    prov = provenance()  # before writing: regenerating a committed report must not read as a dirty tree
    out.mkdir(parents=True, exist_ok=True)
    if source is not None:
        df = load_run_table(runs_csv)
        if "study" not in df:  # tables written before the column: the study the earlier report read
            earlier_study = re.search(r"--study=(\S+)", source["earlier_provenance"].get("command", ""))
            if earlier_study:
                df["study"] = pathlib.PurePath(earlier_study.group(1)).name
        paths = write_report(df, out, source=source["runs_csv"], **settings)
        if runs_csv.resolve() != (out / "runs.csv").resolve():
            shutil.copyfile(runs_csv, out / "runs.csv")
        extra: dict[str, Any] = {"reanalysis_of": source}
    else:
        paths = write_report(study, out, latest_sweep_only=latest_sweep_only, **settings)
        df, _ = load_results(study, latest_sweep_only=latest_sweep_only)
        df = df[df["exclude_reason"] != STALE_REASON]
        cols = [c for c in _RUN_COLUMNS if c in df] + sorted(c for c in df if c.startswith("eval/"))
        df = df[cols].sort_values(["family", "C"])
        df.to_csv(out / "runs.csv", index=False)
        manifest = study / "sweep" / "manifest.json"
        extra = {"sweep_source": json.loads(manifest.read_text()).get("source", "") if manifest.exists() else ""}
    wall = float(np.nansum(df["wall_time_s"])) if "wall_time_s" in df else None
    atomic_write_json(out / "provenance.json", {
        "command": command_line(module), **extra, "analysis": s, "num_runs": int(len(df)), "wall_time_s_sum": wall,
        **prov})
    return paths, df


def _define_flags() -> None:
    """The command line's flags, defined only when this file runs as a script (absl flags are process-global)."""
    flags.DEFINE_string("config", None, "Experiment file and preset the study was swept with.", required=True)
    flags.DEFINE_string("study", None, "The study directory (<workdir>/<study>).")
    flags.DEFINE_string("runs_csv", None, "Instead of --study: a committed run table (runs.csv) to refit.")
    flags.DEFINE_string("out", None, "Output directory under benchmarks/results/.", required=True)
    flags.DEFINE_list("analysis_flags", [], "Overrides of the analysis settings, key=value.")


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    paths, _ = write_study_report(
        f.config, pathlib.Path(f.out), study=pathlib.Path(f.study) if f.study else None,
        runs_csv=pathlib.Path(f.runs_csv) if f.runs_csv else None,
        analysis_overrides=dict(kv.split("=", 1) for kv in f.analysis_flags))
    print(f"report: {paths['report.md']}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
