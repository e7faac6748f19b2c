"""The size table: the N_dense it states is what the built models have, for every family's ladder."""

from __future__ import annotations

import re

import pytest

from scaling_rec.families import CTR_FAMILIES
from scaling_rec.models import ctr
from scaling_rec.sweep import sizes


@pytest.fixture(scope="module")
def computed() -> dict[str, int]:
    return dict(sizes.table(max_len=50, time_bias=False))


def test_stated_n_dense_matches_the_built_models(computed):
    stated = {m.group(1): int(m.group(2).replace(",", ""))
              for m in re.finditer(r"^\| (\w+/\w+)\s*\|.*\|\s*([\d,]+)\s*\|$", sizes.__doc__, re.M)}
    stated |= {f"{name}/{rung}": r.n_dense for name in CTR_FAMILIES for rung, r in ctr.get(name).ladder.items()}
    assert set(stated) == set(sizes.SIZES)
    assert computed == stated


PAIRED = ("XS", "S", "d64x4", "d128x8", "d256x16")  # experiments/hstu/size_ladder.py
LADDERS = [("hstu", ("XS", "S", "M", "L", "XL")), ("hstu", PAIRED), ("sasrec", ("XS", "S", "M", "L", "XL")),
           ("sasrec", PAIRED), *((f, tuple(f"r{i}" for i in range(6))) for f in CTR_FAMILIES),
           ("tiger", ("s0", "s1", "r0", "r1", "r2", "r3"))]


@pytest.mark.parametrize(("family", "rungs"), LADDERS)
def test_each_ladder_grows_in_n_dense(computed, family, rungs):
    ladder = [computed[f"{family}/{s}"] for s in rungs]
    assert ladder == sorted(ladder) and ladder[-1] > 100 * ladder[0]


def test_every_size_is_on_a_ladder():
    on_ladders = {f"{family}/{s}" for family, rungs in LADDERS for s in rungs}
    assert set(sizes.SIZES) == on_ladders


def test_every_size_names_its_own_family():
    for name, size in sizes.SIZES.items():
        assert name.split("/")[0] == size.family == size.overrides()["model.family"], name
