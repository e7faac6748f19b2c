"""The run ids of the studies whose sweeps take their models from the named ladders (scaling_rec/sweep/sizes.py).

A run id hashes the whole resolved config, so equal ids mean equal runs: moving a ladder into the size
table (or changing the table) must keep them, or every finished run of the study would be orphaned.
The ids are those of the canonical data, whose content identity leaves the id unchanged
(scaling_rec.provenance.data_identity): no data file is read, so they need no data on the machine.

    python -m tests.golden.ladder_run_ids      # rewrites ladder_run_ids.json (only for an intended change)
"""

from __future__ import annotations

import json
import pathlib
from unittest import mock

from scaling_rec.sweep.spec import expand, load_experiment

PATH = pathlib.Path(__file__).with_name("ladder_run_ids.json")
ROOT = pathlib.Path(__file__).resolve().parents[2]
STUDIES = {"experiments/wukong/scaling.py": ("quick", "cpu", "full"), "experiments/tiger/scaling.py": ("gpu", "smoke")}


def run_ids() -> dict[str, list[list[str]]]:
    """'<file>:<preset>' -> [[size label, run id], ...] in sweep order."""
    out = {}
    with mock.patch("scaling_rec.provenance.data_files", lambda config: []):
        for path, presets in STUDIES.items():
            module = load_experiment(ROOT / path)
            for preset in presets:
                specs = expand(module.get_config(preset), module.get_sweep(preset))
                out[f"{path}:{preset}"] = [[s.size, s.run_id] for s in specs]
    return out


if __name__ == "__main__":
    PATH.write_text(json.dumps(run_ids(), indent=1) + "\n")
