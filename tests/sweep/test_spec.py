"""Sweep expansion: deterministic ids, grids, size labels and clear errors (no training)."""

from __future__ import annotations

import math

import pytest

from scaling_rec import config as config_lib
from scaling_rec.errors import ConfigError
from scaling_rec.sweep.spec import expand, load_experiment, load_sweep
from scaling_rec.sweep.store import Store, read_spec
from tests.sweep.helpers import REPO, TINY


def _base():
    return load_experiment(TINY).get_config()


def test_expansion_is_deterministic_and_ids_are_config_hashes():
    path = f"{REPO}/experiments/hstu/isoflop.py:full"
    base = load_experiment(path.split(":")[0]).get_config("full")
    first = load_sweep(path, base)
    second = load_sweep(path, load_experiment(path.split(":")[0]).get_config("full"))
    assert [s.run_id for s in first] == [s.run_id for s in second]
    assert len({s.run_id for s in first}) == len(first)
    for s in first:
        assert s.run_id == config_lib.run_id(s.config)
        assert s.config.train.flops_budget == s.budget > 0
        assert s.config.train.num_epochs == 0 and s.config.train.num_steps == 0


def test_isoflop_presets_cover_the_grid_the_study_needs():
    path = REPO / "experiments" / "hstu" / "isoflop.py"
    module = load_experiment(path)
    full = load_sweep(f"{path}:full", module.get_config("full"))
    budgets = sorted({s.budget for s in full})
    assert len(budgets) >= 5 and math.log10(budgets[-1] / budgets[0]) >= 2
    for family in ("hstu", "sasrec"):
        for c in budgets:
            sizes = {s.size for s in full if s.budget == c and s.family == family}
            assert len(sizes) >= 3 and all(z.startswith(family + "/") for z in sizes)
    quick = load_sweep(f"{path}:quick", module.get_config("quick"))
    # 4 budgets (the fewest a 3-parameter L(C) fit accepts) x 3 sizes
    assert len(quick) == 12 and len({s.budget for s in quick}) == 4
    assert {s.size for s in quick} == {"hstu/XS", "hstu/S", "hstu/M"}
    assert quick[0].config.data.name == "amazon-beauty"


def test_size_table_sets_the_model_and_labels_the_run():
    specs = expand(_base(), {"budgets": [1e6], "sizes": ["S", "M"], "families": ["hstu", "sasrec"]})
    assert [s.size for s in specs] == ["hstu/S", "sasrec/S", "hstu/M", "sasrec/M"]
    m = specs[2].config.model
    assert (m.family, m.embed_dim, m.num_blocks, m.num_heads, m.qk_dim) == ("hstu", 50, 8, 2, 25)
    both = expand(_base(), {"budgets": [1e6, 2e6], "sizes": ["hstu/S"], "ladder": ["hstu/XS", "hstu/S"]})
    assert [(s.size, s.budget) for s in both] == [("hstu/S", 1e6), ("hstu/S", 2e6), ("hstu/XS", 0.0), ("hstu/S", 0.0)]
    assert both[2].config.train.num_steps == 4


def test_a_point_length_key_replaces_the_preset_length_and_repeats_are_dropped():
    base = _base()
    assert base.train.num_steps == 4
    specs = expand(base, [{"train.flops_budget": 5e6}, {"train.flops_budget": 5e6}, {}])
    assert len(specs) == 2
    assert specs[0].config.train.num_steps == 0 and specs[0].budget == 5e6
    assert specs[1].config.train.num_steps == 4 and specs[1].budget == 0


def test_a_group_label_reaches_the_spec_file_but_not_the_run_id(tmp_path):
    plain = expand(_base(), [{"size": "hstu/S"}])[0]
    grouped = expand(_base(), {"sizes": ["hstu/S"], "overrides": {"group_label": "hstu (ratings ≥ 4)"}})[0]
    assert grouped.run_id == plain.run_id == config_lib.run_id(grouped.config)
    assert "group" not in plain.labels and grouped.labels["group"] == "hstu (ratings ≥ 4)"
    _, labels = read_spec(Store(tmp_path).write_spec(grouped))
    assert labels == {"size": "hstu/S", "family": "hstu", "budget": 0.0, "group": "hstu (ratings ≥ 4)"}


def test_data_quality_arms_are_separate_groups_of_one_family():
    path = REPO / "experiments" / "hstu" / "data_quality.py"
    module = load_experiment(path)
    for preset in ("ml100k", "beauty_dedup"):
        specs = load_sweep(f"{path}:{preset}", module.get_config(preset))
        groups = {g: {s.size for s in specs if s.group == g} for g in {s.group for s in specs}}
        assert len(groups) == 2 and all(sizes == {"hstu/XS", "hstu/S", "hstu/M"} for sizes in groups.values())
        assert {s.family for s in specs} == {"hstu"}


@pytest.mark.parametrize("sweep, message", [
    ([{"model.num_blockz": 2}], "model.num_blocks"),
    ([{"train.num_steps": 2, "train.flops_budget": 1e6}], "set only one"),
    ({"budgets": [1e6], "sizes_per_budget": [["S"], ["M"]]}, "2 lists for 1 budgets"),
    ({"budgets": [1e6], "sizes": ["hstu/XXL"]}, "unknown model size"),
    ({"budgets": [1e6]}, "need 'sizes'"),
    ({"budgetz": [1e6]}, "unknown grid keys"),
    ([{"model.num_heads": 0}], "must be > 0"),
])
def test_bad_sweeps_fail_before_anything_runs(sweep, message):
    with pytest.raises(ConfigError, match=message):
        expand(_base(), sweep)


@pytest.mark.parametrize("study, presets", [
    ("beauty", ["tiny", "sasrec", "hstu", "hstu_large"]),
    ("toys", ["tiny", "sasrec", "hstu", "hstu_large"]),
    ("ml1m", ["tiny", "sasrec", "hstu", "hstu_large"]),
    ("isoflop", ["quick", "full", "large"]),
    ("scales", ["quick", "full"]),
    ("data_quality", ["ml100k", "beauty_dedup"]),
    ("seq_len", ["quick", "full"]),
    ("known_answer", ["quick", "cpu", "gpu"]),
])
def test_every_experiment_preset_expands_to_valid_configs(study, presets):
    path = REPO / "experiments" / "hstu" / f"{study}.py"
    module = load_experiment(path)
    assert "python -m launch." in module.__doc__ and "untime" in module.__doc__ and "xpected" in module.__doc__
    for preset in presets:
        specs = load_sweep(f"{path}:{preset}", module.get_config(preset))
        assert specs and all(s.config.study == specs[0].config.study for s in specs)


def test_a_command_line_override_a_sweep_point_sets_again_is_an_error():
    """`--config.train.num_steps=2` on a sweep whose points set their own lengths, or a size flag under points
    that name sizes, was dropped with no word: the runs kept their ids and the full study ran (or was found
    finished). A flag no point overrides still applies."""
    base = load_experiment(TINY).get_config("steps")
    base.train.num_steps = 2
    with pytest.raises(ConfigError, match=r"--config.train.num_steps=2: sweep point 0 .* sets it again"):
        load_sweep(f"{TINY}:steps", base)
    base = load_experiment(TINY).get_config("budgets")
    base.train.num_steps = 7  # the points set train.flops_budget, which resets the other length keys
    with pytest.raises(ConfigError, match="num_steps=7"):
        load_sweep(f"{TINY}:budgets", base)
    base = load_experiment(TINY).get_config("steps")
    base.data.synthetic_users = 100
    assert all(s.config.data.synthetic_users == 100 for s in load_sweep(f"{TINY}:steps", base))


def test_a_point_that_changes_its_sizes_shape_is_refused():
    """{'size': 'hstu/S', 'model.num_blocks': 7} trained 7 blocks under the label hstu/S (2 blocks), and the
    ladder analysis groups runs by that label."""
    base = load_experiment(TINY).get_config("steps")
    with pytest.raises(ConfigError, match="size 'hstu/S' sets {'model.num_blocks': 7}"):
        expand(base, [{"size": "hstu/S", "model.num_blocks": 7}])
    assert len(expand(base, [{"size": "hstu/S", "model.num_blocks": 2}])) == 1  # the size's own value is fine
