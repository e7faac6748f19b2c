"""Golden runs: each family's tiny run (CPU, f32) must reproduce its pinned losses, metrics and result fields.

A change that moves any of these numbers fails here, on purpose. The pinned values were recorded on
the commit stored with them (golden_values.json, field 'commit'). Result fields are compared as
"these keys present with these values": a new result field does not fail the test, a changed or
removed one does.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import pytest

from tests.golden.runs import FAMILIES, record

GOLDEN = json.loads(pathlib.Path(__file__).with_name("golden_values.json").read_text())
RTOL, ATOL = 1e-4, 1e-6  # f32 on the CPU: room for a changed summation order, not for a changed formula


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` differs from `expected`: every key of `expected` must be in `actual` with its value."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a dict, got {actual!r}"]
        out = []
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{path}.{k}: missing (expected {v!r})")
            else:
                out.extend(mismatches(v, actual[k], f"{path}.{k}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [m for i, (e, a) in pairs for m in mismatches(e, a, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        both_nan = math.isnan(expected) and math.isnan(actual)
        if both_nan or math.isclose(actual, expected, rel_tol=RTOL, abs_tol=ATOL):
            return []
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return [] if actual == expected else [f"{path}: expected {expected!r}, got {actual!r}"]


def test_every_family_is_pinned():
    assert sorted(GOLDEN) == sorted(FAMILIES)


def test_mismatches_reports_changed_and_missing_values_but_not_added_keys():
    golden = {"loss": 1.0, "eval": {"auc": 0.7}, "curve": [1, 2]}
    assert mismatches(golden, {"loss": 1.0 + 1e-7, "eval": {"auc": 0.7, "new": 3}, "curve": [1, 2], "x": 0}) == []
    assert mismatches(golden, {"loss": 1.01, "eval": {}, "curve": [1]}) == [
        ".loss: expected 1.0, got 1.01", ".eval.auc: missing (expected 0.7)", ".curve: expected [1, 2], got [1]"]


@pytest.mark.parametrize("family", FAMILIES)
def test_golden_run(family: str, tmp_path: pathlib.Path) -> None:
    golden = GOLDEN[family]
    got = record(family, tmp_path)
    problems = mismatches({"losses": golden["losses"], "result": golden["result"]}, got)
    assert not problems, (
        f"{family}'s tiny golden run no longer matches the values pinned on commit {golden['commit']} "
        f"({len(problems)} differences):\n  " + "\n  ".join(problems[:20]) + "\n"
        "A refactor must not move these numbers. If this change is meant to move them (a fixed bug, a "
        f"changed formula), regenerate with `python -m tests.golden.regenerate {family}` and say in the "
        "commit message which change moved which values and why."
    )
