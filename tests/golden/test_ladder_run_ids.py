"""The studies that take their models from the named ladders keep every run id (and size label)."""

from __future__ import annotations

import json

from tests.golden.ladder_run_ids import PATH, run_ids


def test_ladder_studies_keep_their_run_ids():
    pinned = json.loads(PATH.read_text())
    got = run_ids()
    changed = [f"{study}: {pinned[study]} -> {got.get(study)}" for study in pinned if got.get(study) != pinned[study]]
    assert not changed, (
        "a ladder study's runs changed (size label or run id): every finished run of it would be orphaned.\n  "
        + "\n  ".join(changed) + "\nIf this is intended, rerun `python -m tests.golden.ladder_run_ids` and say why "
        "in the commit message.")
