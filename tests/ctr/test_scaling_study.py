"""experiments/wukong/scaling.py: every sweep point is a valid CTR config, and each ladder climbs in compute."""

from __future__ import annotations

import pytest

from experiments.wukong import scaling
from scaling_rec import ctr_config
from scaling_rec.flops import ctr_forward_flops
from scaling_rec.sweep.spec import apply_point

FRAPPE_VOCAB = (955, 4083, 8, 8, 3, 4, 3, 10, 80, 234)  # our split's vocabulary sizes (with OOV rows)


@pytest.mark.parametrize("preset", ["quick", "cpu", "full"])
def test_points_validate_and_ladders_climb(preset):
    base = scaling.get_config(preset)
    points = scaling.get_sweep(preset)
    blocks = scaling.PRESETS[preset]
    rungs, epochs = blocks[0]  # the first block has the most rungs
    assert len(points) == sum(2 * n * len(e) for n, e in blocks)
    flops = {"wukong": [], "dlrm": []}
    for point in points:
        c = apply_point(base, point)
        ctr_config.validate(c)
        assert c.eval.patience == 0 and c.train.lr_decay_factor == 1.0
        if c.train.num_epochs == epochs[0]:
            flops[c.model.family].append(ctr_forward_flops(c.model, len(FRAPPE_VOCAB)))
    for family, f in flops.items():
        assert len(f) == rungs and all(b > 2 * a for a, b in zip(f, f[1:], strict=False)), (family, f)
    assert flops["wukong"][-1] / flops["wukong"][0] > 80 and flops["dlrm"][-1] / flops["dlrm"][0] > 50
