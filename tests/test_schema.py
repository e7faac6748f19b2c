"""The one config validator (scaling_rec.schema) applied to every family's schema: the same checks, the same
messages, and no schema module importing a model or data module."""

from __future__ import annotations

import pathlib

import ml_collections
import pytest

from scaling_rec import config, ctr_config, schema, tiger_config
from scaling_rec.errors import ConfigError
from scaling_rec.sweep.spec import load_experiment
from scaling_rec.sweep.spec import schema as schema_of
from tests.test_import_graph import import_graph

SCHEMAS = {"sequence": config, "ctr": ctr_config, "tiger": tiger_config}
# A key of each section kind per schema: (an int size, a float, a key with choices).
KEYS = {"sequence": ("model.num_blocks", "train.learning_rate", "data.layout"),
        "ctr": ("model.num_layers", "train.learning_rate", "model.norm"),
        "tiger": ("model.num_layers", "train.learning_rate", "ids.method")}


def _valid(name: str) -> ml_collections.ConfigDict:
    c = SCHEMAS[name].default_config()
    if name == "sequence":
        c.train.num_epochs = 1.0
    return c


def _set(c: ml_collections.ConfigDict, key: str, value) -> None:
    section, name = key.split(".")
    c[section] = ml_collections.ConfigDict({**c[section].to_dict(), name: value})  # bypasses ConfigDict's typing


@pytest.mark.parametrize("name", SCHEMAS)
def test_defaults_validate_with_and_without_devices(name):
    SCHEMAS[name].validate(_valid(name))
    SCHEMAS[name].validate(_valid(name), num_devices=1)


@pytest.mark.parametrize("name", SCHEMAS)
def test_unknown_key_gets_a_suggestion_and_the_schema_file(name):
    c = _valid(name)
    key = KEYS[name][0]
    _set(c, key + "s", 3)
    module = SCHEMAS[name].SCHEMA.module.replace(".", "/") + ".py"
    with pytest.raises(ConfigError, match=rf"unknown .*config key '{key}s'\. Did you mean {key}\b.*{module}"):
        SCHEMAS[name].validate(c)


@pytest.mark.parametrize("name", SCHEMAS)
def test_missing_key_names_the_defaults(name):
    c = _valid(name)
    key = KEYS[name][1]
    section, leaf = key.split(".")
    del c[section][leaf]
    with pytest.raises(ConfigError, match=rf"'{key}' is missing; start from scaling_rec\.\w+\.default_config\(\)"):
        SCHEMAS[name].validate(c)


@pytest.mark.parametrize("name", SCHEMAS)
def test_wrong_type_names_both_types(name):
    c = _valid(name)
    size, lr, _ = KEYS[name]
    _set(c, size, 2.5)
    with pytest.raises(ConfigError, match=rf"'{size}' = 2\.5 has type float; expected int"):
        SCHEMAS[name].validate(c)
    c = _valid(name)
    _set(c, lr, 1)  # an int where a float is expected is fine
    SCHEMAS[name].validate(c)
    _set(c, lr, True)
    with pytest.raises(ConfigError, match="has type bool; expected float"):
        SCHEMAS[name].validate(c)


@pytest.mark.parametrize("name", SCHEMAS)
def test_choices_and_ranges(name):
    size, lr, choice = KEYS[name]
    c = _valid(name)
    _set(c, choice, "nope")
    with pytest.raises(ConfigError, match=rf"'{choice}' = 'nope' is not one of \["):
        SCHEMAS[name].validate(c)
    c = _valid(name)
    _set(c, size, 0)
    with pytest.raises(ConfigError, match=rf"'{size}' = 0 must be > 0\."):
        SCHEMAS[name].validate(c)
    c = _valid(name)
    _set(c, "model.dropout", 1.0)
    with pytest.raises(ConfigError, match=r"'model\.dropout' = 1\.0 must be in \[0, 1\)\."):
        SCHEMAS[name].validate(c)
    c = _valid(name)
    _set(c, "mesh.fsdp", 0)
    with pytest.raises(ConfigError, match=r"'mesh\.fsdp' = 0 must be > 0 \(or -1"):
        SCHEMAS[name].validate(c)


def test_messages_name_their_schema():
    c = _valid("ctr")
    c.train.batch_size = -1
    with pytest.raises(ConfigError, match=r"^CTR config key 'train\.batch_size' = -1 must be > 0\.$"):
        ctr_config.validate(c)
    c = _valid("tiger")
    c.eval.ks = (5, 0)
    with pytest.raises(ConfigError, match=r"^TIGER config key 'eval\.ks' = \(5, 0\) must be a non-empty list"):
        tiger_config.validate(c)


def test_tiger_mesh_is_checked_against_the_devices():
    c = _valid("tiger")
    c.mesh.data = 2
    with pytest.raises(ConfigError, match="= 2 devices, but 1 are available"):
        tiger_config.validate(c, num_devices=1)


def test_unit_fraction_and_one_training_length():
    c = _valid("ctr")
    c.train.lr_decay_factor = 0.0
    with pytest.raises(ConfigError, match=r"'train\.lr_decay_factor' = 0\.0 must be in \(0, 1\]"):
        ctr_config.validate(c)
    c = _valid("ctr")
    c.train.num_epochs = 0.0
    with pytest.raises(ConfigError, match=r"exactly one of 'train\.num_epochs'.*got 0\.0, 0, 0\.0\."):
        ctr_config.validate(c)


def test_tiger_constants_agree_with_the_data_layer():
    """tiger_config repeats two facts of the data layer it may not import; they must agree."""
    from scaling_rec.data.amazon_content import ENCODERS
    from scaling_rec.data.text_encoder import MINILM_WIDTH

    assert tiger_config.ENCODERS == ENCODERS and tiger_config.MINILM_WIDTH == MINILM_WIDTH


# The one way down from a schema: the CTR family declarations (scaling_rec/models/ctr/__init__.py), where each
# family's own module declares its config keys, so that a CTR family is one file (README "Adding a model family").
FAMILY_DECLARATIONS = "scaling_rec.models.ctr"


def test_schema_modules_import_no_model_or_data_module():
    graph = import_graph()
    for module in ("scaling_rec.schema", "scaling_rec.config", "scaling_rec.ctr_config", "scaling_rec.tiger_config"):
        below = sorted(m for m in graph[module] if m.startswith(("scaling_rec.models", "scaling_rec.data"))
                       and m != FAMILY_DECLARATIONS)
        assert not below, f"{module} imports {below}: a schema declares keys and values, the layers below read them"
    assert graph[FAMILY_DECLARATIONS] <= {"scaling_rec.families"}, "the declarations registry must stay a leaf"


def test_every_experiment_preset_validates_against_its_schema():
    """Every preset of every experiment file with a PRESETS list is a valid config of its family."""
    checked = 0
    for path in sorted((pathlib.Path(__file__).parents[1] / "experiments").glob("*/*.py")):
        module = load_experiment(path)
        for preset in getattr(module, "PRESETS", ()):
            c = module.get_config(preset)
            schema_of(c.model.family).validate(c)
            checked += 1
    assert checked >= 10


def test_leaves_and_types():
    c = ml_collections.ConfigDict({"a": 1, "b": {"c": (1, 2), "d": {"e": "x"}}})
    assert dict(schema.leaves(c)) == {"a": 1, "b.c": (1, 2), "b.d.e": "x"}
    assert schema.type_ok(3, 1.0) and not schema.type_ok(1.0, 3) and not schema.type_ok(True, 3)
    assert schema.type_ok([1], (2,)) and not schema.type_ok("ab", (2,))
