"""Trains one reproduction preset and writes benchmarks/results/reproduce_<name>.json.

  python -m benchmarks.reproduce --config=experiments/hstu/reproduce.py:beauty_sasrec --workdir=runs/reproduce

The JSON holds the test and validation metrics at the best validation step (with standard errors),
the published targets, the config, wall time, git commit and machine.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags
from ml_collections import config_flags

from benchmarks.provenance import command_line, portable_paths, provenance
from scaling_rec import host_memory
from scaling_rec.io import atomic_write_json
from scaling_rec.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "study directory for the runs")
_OUT = flags.DEFINE_string("out", "benchmarks/results", "where the JSON goes")

# Table 1 of Rajput et al. 2023 (SASRec rows), the targets of issue 3.
TARGETS = {
    "amazon-beauty": {"test/hr@10": 0.0605, "test/ndcg@10": 0.0318},
    "amazon-toys": {"test/hr@10": 0.0675, "test/ndcg@10": 0.0374},
}


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    preset = flags.FLAGS["config"].config_filename.rsplit(":", 1)[-1] if ":" in flags.FLAGS["config"].config_filename \
        else "default"
    launched = provenance()  # the commit and machine at launch, before hours of training
    result = train_and_evaluate(config, _WORKDIR.value)
    targets = TARGETS.get(config.data.name, {})
    out = {
        "preset": preset,
        "command": command_line("benchmarks.reproduce", [f"--config={flags.FLAGS['config'].config_filename}",
                                                           f"--workdir={_WORKDIR.value}"]),
        "targets": targets,
        "meets_targets": {k: result["eval"].get(k, float("nan")) >= v for k, v in targets.items()},
        "result": result,
        "config": config.to_dict(),
        **launched,
        "finished_utc": provenance()["utc"],
    }
    path = pathlib.Path(_OUT.value) / f"reproduce_{preset}.json"
    atomic_write_json(path, portable_paths(out))  # the run's result names its data files by resolved path
    print(json.dumps({"preset": preset, **{k: result["eval"].get(k) for k in ("test/hr@10", "test/ndcg@10")},
                      "best_step": result["best_step"], "wall_time_s": result["wall_time_s"]}))


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    app.run(main)
