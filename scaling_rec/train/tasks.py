"""The family -> schema and trainer table, and the entry point of one run: the one place that dispatches on
the model family.

A family belongs to a kind in scaling_rec/families.py (sequence retrievers, CTR rankers, TIGER); its config
schema and its trainer (a module whose `train_and_evaluate(config, workdir)` runs its task on
scaling_rec.train.engine) follow from the kind. A new CTR backbone is registered by one entry in
families.CTR_FAMILIES (plus its model in scaling_rec.models.registry); a new kind by one row of `_KINDS`.
"""

from __future__ import annotations

import importlib
import pathlib
import types
from typing import Any

import ml_collections

from scaling_rec.families import CTR_FAMILIES, SEQUENCE_FAMILIES, TIGER_FAMILIES

# (families, schema module, trainer module); the first row is the default for an unknown family, whose
# schema then rejects it by name.
_KINDS = (
    (SEQUENCE_FAMILIES, "scaling_rec.config", "scaling_rec.train.loop"),
    (CTR_FAMILIES, "scaling_rec.ctr_config", "scaling_rec.train.ctr_loop"),
    (TIGER_FAMILIES, "scaling_rec.tiger_config", "scaling_rec.train.tiger_loop"),
)


def _kind(family: str) -> tuple[tuple[str, ...], str, str]:
    return next((kind for kind in _KINDS if family in kind[0]), _KINDS[0])


def schema_for(family: str) -> types.ModuleType:
    """The config module (default_config, validate, run_id) of a model family."""
    return importlib.import_module(_kind(family)[1])


def trainer_for(family: str) -> types.ModuleType:
    """The trainer module (train_and_evaluate) of a model family."""
    return importlib.import_module(_kind(family)[2])


def train_one(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, **kwargs: Any) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) one run with its family's trainer; the run lives
    in workdir/runs/<run_id>/. kwargs go to the trainer (e.g. stop_after_steps)."""
    return trainer_for(config.model.family).train_and_evaluate(config, workdir, **kwargs)
