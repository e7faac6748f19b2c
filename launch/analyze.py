"""Fit scaling laws to a study's results and write fits.json, report.md and plots.

  python -m launch.analyze --workdir=runs/hstu_isoflop --out=reports/hstu_isoflop \\
      [--metric=eval/ndcg@10] [--transform=auto|none|one_minus] [--size=n_dense|n_total] [--wandb]

--workdir holds runs/<run_id>/result.json (or several studies, each with runs/).  The fitted
quantity defaults to the held-out loss of the test split: eval/test/xent (sequential runs: next-item
cross-entropy, nats per event, temperature-calibrated on validation) or eval/test/logloss (CTR runs),
else the first loss-like column; ranking metrics (higher is better) are fitted as 1 − metric under
--transform=auto.  The report's first lines say what was fitted.  W&B logging is offline unless
WANDB_MODE says otherwise.
Exit status: 0 report written, 2 rejected input (one line says the cause and the fix; launch/_cli.py);
a failed analysis removes the --out directory it created.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

from absl import flags, logging

from launch import _cli
from scaling_rec.analysis.report import write_report
from scaling_rec.errors import NoUsableRunError

_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory containing runs/.", required=True)
_OUT = flags.DEFINE_string("out", None, "Directory for fits.json, report.md and PNGs.", required=True)
_METRIC = flags.DEFINE_string("metric", None, "Column to fit (e.g. eval/valid/ndcg@10); default: test loss.")
_TRANSFORM = flags.DEFINE_enum("transform", "auto", ["auto", "none", "one_minus", "reciprocal"],
                               "Fit the metric as is, as 1 − metric, as 1 / metric, or choose by metric name.")
_SIZE = flags.DEFINE_enum("size", "n_dense", ["n_dense", "n_total"], "Which parameter count is N.")
_N_BOOT = flags.DEFINE_integer("n_boot", 200, "Bootstrap resamples per fit (0: no CIs).")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
_CI = flags.DEFINE_float("ci", 0.95, "Two-sided confidence level of the bootstrap intervals.")
_FRONTIER = flags.DEFINE_enum("frontier", "budget", ["budget", "pareto"],
                              "L(C) fitted on the best run per budget, or on the runs no cheaper run beats.")
_WANDB = flags.DEFINE_bool("wandb", False, "Also log the fit table and plots to a W&B summary run.")
_PROJECT = flags.DEFINE_string("wandb_project", "scaling_rec", "W&B project of the summary run.")


flags.register_validator("workdir", lambda d: d is None or os.path.isdir(d),
                         "the study directory does not exist (expected <workdir>/runs/<run_id>/result.json).")


def main(argv: list[str]) -> None:
    del argv
    out = pathlib.Path(_OUT.value)
    created = not out.exists()
    try:
        paths = write_report(
            _WORKDIR.value, out, metric=_METRIC.value, transform=_TRANSFORM.value, size=_SIZE.value,
            n_boot=_N_BOOT.value, seed=_SEED.value, ci=_CI.value, frontier=_FRONTIER.value,
            use_wandb=_WANDB.value, wandb_project=_PROJECT.value,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except NoUsableRunError:  # the report was written: it lists why each run was left out
        raise
    except BaseException:
        if created:  # a failed analysis leaves no half-written --out behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    for path in paths.values():
        logging.info("wrote %s", path)
    print(f"report: {paths['report.md']}")


if __name__ == "__main__":
    _cli.run(main)
