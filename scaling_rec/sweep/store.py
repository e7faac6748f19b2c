"""The results store of one study: `<workdir>/<study>/`.

    runs/<run_id>/{config.json, metrics.jsonl, result.json, ckpt/}   written by the train loop
    sweep/manifest.json        the sweep's runs and their labels (size, family, budget)
    sweep/status.json          each run's state as the runner last saw it
    sweep/specs/<run_id>.json  the resolved config a worker process or SLURM job runs
    sweep/locks/<run_id>.lock  held (flock) by the process running that run (scaling_rec.train.run)
    sweep/logs/<run_id>.log    console output of local worker processes

Every file is written atomically (scaling_rec.io). The lock is an advisory `flock`, released by the
kernel when its holder dies (SIGKILL included), so a crashed run never blocks a relaunch.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import time
from typing import Any

import ml_collections

from scaling_rec import config as config_lib
from scaling_rec.errors import ResultError, RunBusyError
from scaling_rec.io import FINISHED, atomic_write_json, read_run_result, remove_stale_temps
from scaling_rec.sweep.spec import RunSpec, schema, set_key
from scaling_rec.train.run import run_lock, study_root

__all__ = ["FINISHED", "RunBusyError", "Store", "config_from_dict", "read_spec", "study_root"]


STALE_TEMP_S = 3600.0  # a temporary file this old in sweep/ is no live write's


def config_from_dict(d: dict[str, Any], where: str = "") -> ml_collections.ConfigDict:
    """The family's default_config() (spec.schema) with the values of a stored config dict (unknown keys
    are a ConfigError)."""
    config = schema(str(d.get("model", {}).get("family", ""))).default_config()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                set_key(config, f"{prefix}{k}", v, where)

    walk(d, "")
    return config


class Store:
    """Read and write one study's results store (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = pathlib.Path(root)
        self.sweep_dir = self.root / "sweep"

    def run_dir(self, run_id: str) -> pathlib.Path:
        return self.root / "runs" / run_id

    def spec_path(self, run_id: str) -> pathlib.Path:
        return self.sweep_dir / "specs" / f"{run_id}.json"

    def log_path(self, run_id: str) -> pathlib.Path:
        return self.sweep_dir / "logs" / f"{run_id}.log"

    def list_runs(self) -> list[str]:
        """Run ids with a run directory, sorted."""
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    def read_result(self, run_id: str) -> dict[str, Any] | None:
        """result.json of the run, None when absent; ResultError when it is not valid JSON."""
        return read_run_result(self.run_dir(run_id))

    def status(self, run_id: str) -> str:
        """'ok' | 'diverged' | 'degenerate' | 'failed' (result.json says so), 'partial' (started, no result),
        'pending'."""
        result = self.read_result(run_id)
        if result is not None:
            return str(result.get("status", "failed"))
        return "partial" if self.run_dir(run_id).exists() else "pending"

    def is_finished(self, run_id: str) -> bool:
        return self.status(run_id) in FINISHED

    def write_spec(self, spec: RunSpec) -> pathlib.Path:
        """sweep/specs/<run_id>.json: the resolved config and labels (what a worker process runs)."""
        path = self.spec_path(spec.run_id)
        atomic_write_json(path, {"run_id": spec.run_id, "labels": spec.labels, "config": spec.config.to_dict()})
        return path

    def remove_stale_temps(self) -> list[str]:
        """Deletes the sweep files' temporary files left by a runner killed mid-write (older than
        STALE_TEMP_S: several runners may share a study, so a younger one may be a live write); the
        paths deleted, relative to the study."""
        return [(directory / name).relative_to(self.root).as_posix()
                for directory in (self.sweep_dir, self.sweep_dir / "specs")
                for name in remove_stale_temps(directory, STALE_TEMP_S)]

    def write_manifest(self, specs: list[RunSpec], source: str) -> None:
        atomic_write_json(self.sweep_dir / "manifest.json", {
            "source": source, "study": specs[0].config.study if specs else "", "written": time.time(),
            "runs": [{"run_id": s.run_id, **s.labels} for s in specs],
        })

    def write_status(self, states: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(self.sweep_dir / "status.json", states)

    def read_status(self) -> dict[str, dict[str, Any]]:
        path = self.sweep_dir / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def lock(self, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Holds the run's lock for the body (scaling_rec.train.run.run_lock); RunBusyError at once if a live
        process holds it."""
        return run_lock(self.root, run_id)


def read_spec(path: str | os.PathLike) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
    """(config, labels) of a spec file written by Store.write_spec; checks the stored run id."""
    d = json.loads(pathlib.Path(path).read_text())
    config = config_from_dict(d["config"], where=f"{path}: ")
    rid = config_lib.run_id(config)
    if d.get("run_id") not in (None, rid):
        raise ResultError(f"{path}: stored run_id {d['run_id']} != {rid} of its config; the schema changed?")
    return config, d.get("labels", {})
