"""Durable file writes: every file of the results store is written to a temporary name and renamed."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
import time
from typing import Any

from scaling_rec.errors import ResultError


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _process_umask()  # read once, at import: os.umask can only be read by setting it


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` so that readers see the old file or the whole new one, never a part.

    The file gets the permissions an ordinary open() would give it (0666 less the umask), or keeps those of
    the file it replaces; mkstemp's temporary file alone would be 0600, unreadable to collaborators.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: str | os.PathLike, min_age_s: float = 0.0) -> list[str]:
    """Deletes the temporary files atomic_write_text left in `directory` (a writer killed between writing and
    renaming, e.g. by SIGKILL) that are at least `min_age_s` seconds old; the names deleted. With min_age_s
    = 0 only the directory's owner may call it (a run's lock holder): a temporary file of a live writer is
    not stale. A directory that several processes write (a study's sweep/) passes an age no live write
    reaches (a write holds its temporary file for milliseconds)."""
    removed = []
    now = time.time()
    for tmp in pathlib.Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):  # another cleaner or the writer got there first
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp.name)
    return sorted(removed)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def _default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, pathlib.Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")

# A run whose result.json has one of these statuses is done: it is returned, never resumed or rerun
# ('partial' and 'failed' runs resume). The one definition the loops, the sweep store and launch.train use.
FINISHED = ("ok", "diverged", "degenerate")


def read_run_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """run_dir/result.json, or None when absent; ResultError when it is not valid JSON."""
    path = pathlib.Path(run_dir) / "result.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultError(f"{path} is corrupted ({e}); delete it to rerun the run.") from e
