"""Run logging: a JSONL file in the run directory always, W&B (offline unless configured) on top."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import ml_collections

from scaling_rec.errors import ConfigError
from scaling_rec.io import atomic_write_text


def _import_wandb() -> Any:
    """The wandb module; ConfigError (one line, no traceback at the CLI) when it cannot be imported."""
    try:
        import wandb
    except ImportError as e:
        raise ConfigError(f"logging.wandb=True but wandb cannot be imported ({e}); install it "
                          "(pip install -r requirements.txt) or set --config.logging.wandb=False.") from e
    return wandb


class RunLogger:
    """Appends one JSON record per call to `<run_dir>/metrics.jsonl` and mirrors it to W&B.

    W&B: project = logging.wandb_project, group = study, name = id = run_id, the resolved config and
    a summary; mode from $WANDB_MODE, 'offline' when unset, so no account is needed.
    """

    def __init__(self, run_dir: pathlib.Path, config: ml_collections.ConfigDict, run_id: str,
                 resume_step: int = 0, resume_records: int | None = None, enabled: bool = True) -> None:
        """resume_step / resume_records: a resumed run's checkpoint step and the number of records logged when
        it was saved (None: a checkpoint that predates the count). The records after it are dropped, as the
        resumed run logs them again: the first resume_records, else those of steps <= resume_step, are kept."""
        self.path = run_dir / "metrics.jsonl"
        self._file = None
        self._wandb = None
        self.records = 0
        if not enabled:  # a non-leading process of a multi-process run: nothing to write
            return
        wandb = _import_wandb() if config.logging.wandb else None
        self.records = _truncate(self.path, resume_step, resume_records)
        self._file = self.path.open("a")
        if wandb is not None:
            self._wandb = wandb.init(
                project=config.logging.wandb_project, group=config.study, name=run_id, id=run_id,
                resume="allow", dir=str(run_dir), config=config.to_dict(),
                mode=os.environ.get("WANDB_MODE", "offline"), settings=wandb.Settings(silent=True),
            )

    def log(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        self.records += 1
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=int(record.get("step", 0)))

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            for k, v in values.items():
                self._wandb.summary[k] = v

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _truncate(path: pathlib.Path, step: int, records: int | None) -> int:
    """Keeps the first `records` records of the log (or, when None, those of steps <= `step`) and returns how
    many it kept; the rest are about to be logged again by a resumed run."""
    if not path.exists():
        return 0
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
        kept = (len(keep) < records) if records is not None else (int(record.get("step", 0)) <= step)
        if kept:
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))
    return len(keep)


def progress(message: str) -> None:
    """One progress line on stderr (kept off stdout so that tools can parse stdout)."""
    print(message, file=sys.stderr, flush=True)
