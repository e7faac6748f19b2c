"""Writes a finished study's report under benchmarks/results/<name>/, with the raw run table and provenance.

  python -m benchmarks.study_report --config=experiments/wukong/scaling.py:cpu \
      --study=runs/wukong/wukong_scaling --out=benchmarks/results/wukong_scaling_cpu

The fit settings are the experiment file's `get_analysis(preset)` (the same flags launch.sweep passes
to launch.analyze), extra ones may follow as --analysis_flags. Writes into --out: report.md, fits.json
and the PNGs (scaling_rec.analysis.write_report), runs.csv (one row per run: identity, C, N, D, status,
wall time and every eval metric) and provenance.json (this command, the sweep's source, git commit,
machine, time).
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

from benchmarks.provenance import command_line, provenance
from scaling_rec.analysis import load_results, write_report
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import load_analysis

_CONFIG = flags.DEFINE_string("config", None, "Experiment file and preset the study was swept with.", required=True)
_STUDY = flags.DEFINE_string("study", None, "The study directory (<workdir>/<study>).", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory under benchmarks/results/.", required=True)
_EXTRA = flags.DEFINE_list("analysis_flags", [], "Overrides of the analysis settings, key=value.")

_RUN_COLUMNS = ("run_id", "family", "model_family", "size", "status", "usable", "exclude_reason", "budget", "C",
                "N", "D", "wall_time_s", "steps", "epochs")


def main(argv: list[str]) -> None:
    del argv
    study, out = pathlib.Path(_STUDY.value), pathlib.Path(_OUT.value)
    s = {**load_analysis(_CONFIG.value), **dict(kv.split("=", 1) for kv in _EXTRA.value)}
    prov = provenance()  # before writing: regenerating a committed report must not read as a dirty tree
    paths = write_report(study, out, metric=s.get("metric"), transform=s.get("transform", "auto"),
                         n_boot=int(s.get("n_boot", 200)), frontier=s.get("frontier", "budget"))
    df, _ = load_results(study)
    cols = [c for c in _RUN_COLUMNS if c in df] + sorted(c for c in df if c.startswith("eval/"))
    df[cols].sort_values(["family", "C"]).to_csv(out / "runs.csv", index=False)
    manifest = study / "sweep" / "manifest.json"
    source = json.loads(manifest.read_text()).get("source", "") if manifest.exists() else ""
    atomic_write_json(out / "provenance.json", {
        "command": command_line("benchmarks.study_report"),
        "sweep_source": source, "analysis": s, "num_runs": int(len(df)), **prov})
    print(f"report: {paths['report.md']}")


if __name__ == "__main__":
    app.run(main)
