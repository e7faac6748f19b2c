"""The size table: the N_dense it states is what the built models have."""

from __future__ import annotations

import re

import pytest

from scaling_rec.sweep import sizes


@pytest.fixture(scope="module")
def computed() -> dict[str, int]:
    return dict(sizes.table(max_len=50, time_bias=False))


def test_stated_n_dense_matches_the_built_models(computed):
    stated = {m.group(1): int(m.group(2).replace(",", ""))
              for m in re.finditer(r"^\| (\w+/\w+)\s*\|.*\|\s*([\d,]+)\s*\|$", sizes.__doc__, re.M)}
    assert set(stated) == set(sizes.SIZES)
    assert computed == stated


def test_each_ladder_grows_in_n_dense(computed):
    for family in ("hstu", "sasrec"):
        ladder = [computed[f"{family}/{s}"] for s in ("XS", "S", "M", "L", "XL")]
        assert ladder == sorted(ladder) and ladder[-1] > 100 * ladder[0]
