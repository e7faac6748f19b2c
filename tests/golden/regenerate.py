"""Writes tests/golden/golden_values.json: every family's tiny run on this checkout (CPU, f32).

    python -m tests.golden.regenerate            # every family
    python -m tests.golden.regenerate tiger      # one family, the others kept

Run it only for a change that is meant to move the numbers, and say in the commit message which
change moved which values and why.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import jax

from tests.golden.runs import FAMILIES, record

PATH = pathlib.Path(__file__).with_name("golden_values.json")


def main(families: list[str]) -> None:
    jax.config.update("jax_platforms", "cpu")
    values = json.loads(PATH.read_text()) if PATH.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=PATH.parent).stdout.strip()
    for family in families or FAMILIES:
        with tempfile.TemporaryDirectory() as tmp:
            values[family] = {"commit": commit, **record(family, pathlib.Path(tmp))}
        print(f"{family}: final loss {values[family]['result'].get('final_train_loss')}", file=sys.stderr)
    PATH.write_text(json.dumps(dict(sorted(values.items())), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
