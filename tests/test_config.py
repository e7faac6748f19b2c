"""Config validation: every bad input gets a ConfigError naming the key, before any compute."""

from __future__ import annotations

import ml_collections
import pytest

from scaling_rec.config import ADDED_KEYS, default_config, run_id, validate
from scaling_rec.errors import ConfigError


def _cfg():
    c = default_config()
    c.train.num_epochs = 1.0
    return c


def test_default_with_a_length_is_valid():
    validate(_cfg(), num_devices=1)


def test_unknown_key_is_named_with_a_suggestion():
    c = _cfg()
    c.model.num_blockz = 3
    with pytest.raises(ConfigError, match=r"model\.num_blockz.*model\.num_blocks"):
        validate(c)


def test_wrong_type_names_key_and_types():
    c = _cfg()
    # ConfigDict itself refuses `c.model.embed_dim = "fifty"`; a section replaced wholesale (as an
    # experiment file may do) is not type-checked by ml_collections, so validate() must catch it.
    c.model = ml_collections.ConfigDict({**c.model.to_dict(), "embed_dim": "fifty"})
    with pytest.raises(ConfigError, match=r"model\.embed_dim.*str.*int"):
        validate(c)


@pytest.mark.parametrize("key,value", [("model.embed_dim", 0), ("train.batch_size", -4), ("model.num_heads", 0)])
def test_non_positive_sizes(key, value):
    c = _cfg()
    section, name = key.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*> 0"):
        validate(c)


def test_choices_are_listed():
    c = _cfg()
    c.model.family = "bert4rec"
    with pytest.raises(ConfigError, match=r"model\.family.*'hstu', 'sasrec'"):
        validate(c)


def test_exactly_one_training_length():
    c = _cfg()
    c.train.num_steps = 10
    with pytest.raises(ConfigError, match="exactly one"):
        validate(c)


def test_batch_not_divisible_by_data_parallel_size():
    c = _cfg()
    c.train.batch_size = 12
    c.mesh.data = 8
    with pytest.raises(ConfigError, match=r"train\.batch_size.*12.*data-parallel size.*8"):
        validate(c, num_devices=8)


def test_mesh_must_cover_the_devices():
    c = _cfg()
    c.mesh.data = 2
    with pytest.raises(ConfigError, match="2 devices.*8 are available"):
        validate(c, num_devices=8)


def test_run_id_is_stable_and_ignores_logging():
    a, b = _cfg(), _cfg()
    b.logging.wandb = not a.logging.wandb
    assert run_id(a) == run_id(b)
    b.model.num_blocks = 3
    assert run_id(a) != run_id(b)


def test_a_key_added_later_keeps_old_run_ids_at_its_default():
    """ADDED_KEYS at their default leave the id as it was before the key existed (finished runs stay
    finished); any other value makes a new run."""
    a = _cfg()
    old = ml_collections.ConfigDict(a.to_dict())  # the schema as it was: without the added keys
    removed = 0
    for key in ADDED_KEYS:  # the list also holds keys added to the TIGER schema (tests/tiger/test_loop.py)
        section, name = key.split(".")
        if name in old[section]:
            del old[section][name]
            removed += 1
    assert removed >= 3 and run_id(a) == run_id(old)
    a.train.loss = "full_softmax"
    assert run_id(a) != run_id(old)


def test_unknown_loss_lists_the_losses():
    c = _cfg()
    c.train.loss = "bpr"
    with pytest.raises(ConfigError, match="train.loss.*sampled_softmax.*full_softmax"):
        validate(c)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_padded_layout_rejects_an_attention_kernel_it_would_ignore(impl):
    c = _cfg()
    c.data.layout, c.model.attention_impl = "padded", impl
    with pytest.raises(ConfigError, match="attention_impl.*no effect with 'data.layout' = 'padded'"):
        validate(c)
    c.model.attention_impl = "auto"
    validate(c)
    c.data.layout, c.model.attention_impl = "jagged", impl
    validate(c)


def test_which_evaluation_users_a_subset_takes_enters_the_run_id_only_with_a_subset():
    """eval.users='sample' (the default) scores another set of users than the 'first' of the runs made before
    the key: with eval.max_users > 0 it is a new run; without a subset the key changes nothing, nor the id."""
    a = _cfg()
    old = ml_collections.ConfigDict(a.to_dict())
    del old.eval["users"]
    assert run_id(a) == run_id(old)  # no subset
    a.eval.max_users = old.eval.max_users = 100
    assert run_id(a) != run_id(old)
    a.eval.users = "first"
    assert run_id(a) == run_id(old)


def test_a_fix_that_changed_numbers_gives_the_runs_it_touches_new_ids(monkeypatch):
    """The lr-schedule, Frappe-negatives and CTR-budget fixes changed numbers without changing configs: a sweep
    found the runs made before them finished under the same ids. Runs the fixes do not touch keep their ids."""
    from scaling_rec import ctr_config, schema

    cosine, constant = _cfg(), _cfg()
    cosine.train.lr_decay = "cosine"
    frappe = ctr_config.default_config()
    frappe.train.num_epochs = 1.0
    synthetic = ctr_config.default_config()
    synthetic.data.name, synthetic.train.num_epochs = "synthetic", 1.0
    ctr_budget = ctr_config.default_config()
    ctr_budget.data.name, ctr_budget.train.num_epochs, ctr_budget.train.flops_budget = "synthetic", 0.0, 1e12
    sequential_budget = _cfg()
    sequential_budget.train.num_epochs, sequential_budget.train.flops_budget = 0.0, 1e12
    configs = (cosine, constant, frappe, synthetic, ctr_budget, sequential_budget)
    with monkeypatch.context() as m:
        m.setattr(schema, "NUMBER_FIXES", ())
        before = [run_id(c) for c in configs]
    after = [run_id(c) for c in configs]
    assert [a != b for a, b in zip(after, before, strict=True)] == [True, False, True, False, True, False]
