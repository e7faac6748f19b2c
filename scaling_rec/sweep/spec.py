"""Sweep declarations → run specs: full configs with stable run ids.

An experiment file may define `get_sweep(preset)` next to `get_config(preset)`. It returns either

* a list of points, each a dict of dotted config keys → values, plus the optional key `size` (a name
  from scaling_rec/sweep/sizes.py:SIZES), e.g. `[{"size": "hstu/S", "data.max_len": 200}, ...]`, or
  the optional key `size_label` (a free label for the sweep table and the analysis, e.g. 'wukong/r2'
  for a point that sets the model keys itself), and the optional key `group_label` (a free label for
  the point's arm or curve, e.g. 'hstu (ratings >= 4)': the analysis groups and fits runs by it
  instead of by model family, so two arms of one family are fitted apart; recorded in the spec's
  labels as `group`); neither label changes the run id; or
* a grid (ml_collections.ConfigDict or dict) with any of
    budgets:          training-FLOP budgets C (train.flops_budget; the loop plans the steps)
    sizes:            size names trained at every budget (an IsoFLOP grid), or with no budgets
                      at the base config's length (a fixed size ladder)
    sizes_per_budget: one list of size names per budget, instead of `sizes`
    families:         when given, `sizes` and `ladder` are bare labels ('S') combined with each family
    ladder:           size names trained at the base config's length, besides the budget grid
    points:           extra free-form points (as above), appended
    overrides:        dotted keys → values applied to every point first

Expansion is deterministic (declaration order: budgets, sizes, families, then ladder, then points) and
drops repeats (same resolved config = same run id; a repeat's labels are dropped with it, so two arms
must differ in a config key, not only in group_label). Points of the CTR families (Wukong, DLRM,
DCNv2) are validated against scaling_rec.ctr_config, TIGER points against scaling_rec.tiger_config,
all others against scaling_rec.config (`schema`). A point setting one of train.num_steps / num_epochs /
flops_budget zeroes the other two, so a budget replaces the preset's epoch count.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import pathlib
import types
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from scaling_rec import config as config_lib
from scaling_rec.errors import ConfigError
from scaling_rec.sweep.sizes import SIZES, apply_size, size_name
from scaling_rec.train.tasks import schema_for

LENGTH_KEYS = ("train.num_steps", "train.num_epochs", "train.flops_budget")
GRID_KEYS = ("budgets", "sizes", "sizes_per_budget", "families", "ladder", "points", "overrides")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its resolved config, run id and labels (size name, family, budget C, and the
    point's group label, '' when it set none)."""

    config: ml_collections.ConfigDict
    run_id: str
    size: str
    family: str
    budget: float
    group: str = ""

    @property
    def labels(self) -> dict[str, Any]:
        """The labels the spec file and manifest record; `group` only when the point set one."""
        labels: dict[str, Any] = {"size": self.size, "family": self.family, "budget": self.budget}
        return {**labels, "group": self.group} if self.group else labels

    @property
    def curve(self) -> str:
        """What the run is grouped and fitted by: its group label, else its model family."""
        return self.group or self.family


def schema(family: str) -> types.ModuleType:
    """The config module (default_config, validate) of a model family (scaling_rec.train.tasks)."""
    return schema_for(family)


def load_experiment(path: str | pathlib.Path) -> types.ModuleType:
    """Imports an experiment file (a path, as given to --config, without ':preset')."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist (expected experiments/<family>/<study>.py).")
    module_spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def set_key(config: ml_collections.ConfigDict, key: str, value: Any, where: str = "") -> None:
    """config[key] = value for a dotted key of the schema; ConfigError naming the key otherwise."""
    section, _, field = key.rpartition(".")
    node = config
    try:
        for part in section.split(".") if section else []:
            node = node[part]
        if field not in node:
            raise KeyError(field)
    except (KeyError, AttributeError):
        leaves = _dotted_keys(config)
        close = difflib.get_close_matches(key, leaves, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where}unknown config key {key!r}.{hint} Keys: scaling_rec/config.py.") from None
    default = node[field]
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[field] = value
    except TypeError as e:
        raise ConfigError(f"{where}config key {key!r} = {value!r}: {e}") from None


def _dotted_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out += _dotted_keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def apply_point(base: ml_collections.ConfigDict, point: Mapping[str, Any],
                where: str = "") -> ml_collections.ConfigDict:
    """A copy of `base` with the point's size and dotted overrides applied (never adds keys)."""
    config = copy.deepcopy(base)
    point = dict(point)
    if point.get("size"):
        name = size_name(str(point["size"]))
        clash = {k: point[k] for k, v in SIZES[name].overrides().items() if k in point and _as_plain(point[k]) != v}
        if clash:
            raise ConfigError(f"{where}a point of size {name!r} sets {clash}, which that size fixes otherwise: the "
                              f"runs would be labelled {name!r} with another shape; give the shape as model keys "
                              "and a 'size_label' instead.")
        apply_size(config, name)
    point.pop("size", None)
    point.pop("size_label", None)
    point.pop("group_label", None)
    lengths = [k for k in LENGTH_KEYS if k in point]
    if len(lengths) > 1:
        raise ConfigError(f"{where}a point sets {lengths}; set only one of {list(LENGTH_KEYS)}.")
    if lengths:
        for k in LENGTH_KEYS:
            if k.split(".")[1] in config.train:  # TIGER runs are sized by train.num_steps alone
                set_key(config, k, 0 if k == "train.num_steps" else 0.0, where)
    for key in sorted(point):
        if key == "study" and point[key] != base.study:
            raise ConfigError(f"{where}a point may not change 'study' (all runs of a sweep share one study).")
        set_key(config, key, point[key], where)
    return config


def _as_plain(x: Any) -> Any:
    if isinstance(x, ml_collections.ConfigDict):
        return x.to_dict()
    return x


def grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The points a grid declares, in declaration order (see the module docstring)."""
    grid = {k: _as_plain(v) for k, v in dict(_as_plain(grid)).items()}
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"get_sweep(): unknown grid keys {unknown}; known are {list(GRID_KEYS)}.")
    budgets = [float(c) for c in grid.get("budgets") or ()]
    families = list(grid.get("families") or ())
    sizes, per_budget = list(grid.get("sizes") or ()), grid.get("sizes_per_budget")
    if per_budget and sizes:
        raise ConfigError("get_sweep(): give either 'sizes' or 'sizes_per_budget', not both.")
    if per_budget is not None and len(per_budget) != len(budgets):
        raise ConfigError(f"get_sweep(): 'sizes_per_budget' has {len(per_budget)} lists for {len(budgets)} budgets.")
    if budgets and not (sizes or per_budget):
        raise ConfigError("get_sweep(): 'budgets' need 'sizes' or 'sizes_per_budget' (the models to train).")
    if any(c <= 0 for c in budgets):
        raise ConfigError(f"get_sweep(): budgets must be > 0 FLOPs; got {budgets}.")

    def names(labels: Iterable[str]) -> list[str]:
        if not families:
            return [size_name(s) for s in labels]
        return [size_name(s, f) for s in labels for f in families]

    common = dict(grid.get("overrides") or {})
    points: list[dict[str, Any]] = []
    if budgets:
        for i, c in enumerate(budgets):
            for s in names(per_budget[i] if per_budget is not None else sizes):
                points.append({**common, "size": s, "train.flops_budget": c})
    else:
        points += [{**common, "size": s} for s in names(sizes)]
    points += [{**common, "size": s} for s in names(grid.get("ladder") or ())]
    points += [{**common, **dict(_as_plain(p))} for p in grid.get("points") or ()]
    return points


def sweep_points(sweep: Any) -> list[dict[str, Any]]:
    """The points of `sweep`: a grid's (`grid_points`), a list's, or [{}] for None (the base config alone)."""
    if sweep is None:
        return [{}]
    if isinstance(sweep, Mapping | ml_collections.ConfigDict):
        return grid_points(sweep)
    return [dict(_as_plain(p)) for p in sweep]


def check_overrides_apply(base: ml_collections.ConfigDict, pristine: ml_collections.ConfigDict,
                          points: list[dict[str, Any]]) -> None:
    """ConfigError when a key the command line changed (`base` differs from the experiment's own `pristine`
    config there) is set back by a sweep point: its size, its own keys, or the length keys a point's
    length resets. The runs would ignore the flag and keep their ids, so a sweep shrunk with
    --config.train.flops_budget ran (or found finished) the full-size study without a word."""
    changed = [k for k in _dotted_keys(pristine) if _as_plain(_get(base, k)) != _as_plain(_get(pristine, k))]
    for i, point in enumerate(points):
        ours, theirs = apply_point(base, point), apply_point(pristine, point)
        lost = [k for k in changed if _as_plain(_get(ours, k)) == _as_plain(_get(theirs, k))]
        if lost:
            flags = ", ".join(f"--config.{k}={_as_plain(_get(base, k))!r}" for k in lost)
            raise ConfigError(f"{flags}: sweep point {i} {point} sets {'it' if len(lost) == 1 else 'them'} again "
                              "(its own keys, its size, or the other length keys a length resets), so the flag "
                              "would change none of its runs; change the experiment's get_sweep instead.")


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def expand(base: ml_collections.ConfigDict, sweep: Any = None) -> list[RunSpec]:
    """Run specs of `sweep` (a grid, a list of points, or None = the base config alone) over `base`.

    Every config is validated (without devices) so that a bad point fails before anything runs.
    """
    points = sweep_points(sweep)
    if not points:
        raise ConfigError("get_sweep() declared no runs (empty budgets/sizes/points).")
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for i, point in enumerate(points):
        where = f"sweep point {i} {point}: "
        config = apply_point(base, point, where)
        try:
            schema(config.model.family).validate(config)
        except ConfigError as e:
            raise ConfigError(f"{where}{e}") from None
        rid = config_lib.run_id(config)
        if rid in seen:
            continue
        seen.add(rid)
        specs.append(RunSpec(config=config, run_id=rid, size=_size_label(config, point),
                             family=config.model.family, budget=float(config.train.get("flops_budget", 0.0)),
                             group=str(point.get("group_label") or "")))
    return specs


def _size_label(config: ml_collections.ConfigDict, point: Mapping[str, Any]) -> str:
    """The table name of the point's size, or of the table entry the model config matches, or ''."""
    if point.get("size"):
        return size_name(str(point["size"]))
    if point.get("size_label"):
        return str(point["size_label"])
    for name, size in SIZES.items():
        if name.split("/")[0] != config.model.family:
            continue
        if all(config[k.split(".")[0]][k.split(".")[1]] == v for k, v in size.overrides().items()):
            return name
    return ""


def _experiment(config_arg: str) -> tuple[types.ModuleType, list[str]]:
    """The experiment module of `--config=<file.py>:<preset>` and the arguments of its functions ([preset])."""
    path, _, preset = config_arg.partition(":")
    return load_experiment(path), [preset] if preset else []


def experiment_config(config_arg: str) -> ml_collections.ConfigDict:
    """The experiment's own base config, `get_config(preset)`, without command-line overrides."""
    module, args = _experiment(config_arg)
    return module.get_config(*args)


def load_analysis(config_arg: str) -> dict[str, str]:
    """launch.analyze settings the experiment file asks for, {flag: value} from its optional
    `get_analysis(preset)` ({} without one), for `--config=<file.py>:<preset>`."""
    module, args = _experiment(config_arg)
    get_analysis = getattr(module, "get_analysis", None)
    return {str(k): str(v) for k, v in get_analysis(*args).items()} if get_analysis else {}


def load_sweep(config_arg: str, base: ml_collections.ConfigDict) -> list[RunSpec]:
    """Specs for `--config=<file.py>:<preset>` with `base` = that flag's parsed config (overrides applied)."""
    module, args = _experiment(config_arg)
    get_sweep = getattr(module, "get_sweep", None)
    sweep = get_sweep(*args) if get_sweep is not None else None
    check_overrides_apply(base, module.get_config(*args), sweep_points(sweep))
    return expand(base, sweep)
