"""Where a benchmark number came from: git commit, machine, devices, library versions, time, command."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys
from collections.abc import Sequence
from typing import Any

import jax

import scaling_rec
from scaling_rec import hardware, host_memory
from scaling_rec.io import atomic_write_json
from scaling_rec.provenance import code_version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def provenance() -> dict:
    """git commit ($SCALING_REC_COMMIT when set, else git HEAD), machine (with the CPU's model and matmul
    ISA flags, hardware.cpu_info), versions, UTC time, and the host
    allocator's settings (scaling_rec.host_memory; the MALLOC_* environment, which subprocesses inherit)."""
    dev = jax.devices()[0]
    return {
        **code_version(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device_kind": dev.device_kind, "backend": jax.default_backend(),
                    "num_devices": jax.device_count(), "cpu": hardware.cpu_info()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "load_avg": os.getloadavg(),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host_memory": {"retained": scaling_rec.HOST_MEMORY_RETAINED,
                        "env": {k: v for k, v in sorted(os.environ.items())
                                if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", host_memory.ENV)}},
    }


def portable_path(value: str) -> str:
    """`value` made portable when it is an absolute path of this machine (/tmp and non-paths are kept).

    Inside the repository it becomes relative to it, inside $SCALING_REC_DATA '$SCALING_REC_DATA/...',
    elsewhere '<local>/<file name>'. A committed result's command must not name one machine's directories
    (tests/test_no_machine_paths.py).
    """
    if not value.startswith("/"):
        return value
    path = pathlib.Path(os.path.normpath(value))
    data = os.environ.get("SCALING_REC_DATA")
    if data and path.is_relative_to(pathlib.Path(data).resolve()):
        return "/".join(("$SCALING_REC_DATA", *path.relative_to(pathlib.Path(data).resolve()).parts))
    if path.is_relative_to("/tmp"):
        return value
    if path.is_relative_to(ROOT):
        return path.relative_to(ROOT).as_posix()
    return f"<local>/{path.name}"


def command_line(module: str, args: Sequence[str] | None = None) -> str:
    """'python -m <module> <args>' (args: sys.argv[1:] by default), every path value made portable_path."""
    def arg(a: str) -> str:
        flag, eq, value = a.partition("=")
        return f"{flag}={portable_path(value)}" if eq and flag.startswith("-") else portable_path(a)
    return " ".join(["python -m", module, *(arg(a) for a in (sys.argv[1:] if args is None else args))])


def portable_paths(value: Any) -> Any:
    """`value` (a JSON-like tree) with every string that is an absolute path of this machine made
    portable_path: what a committed result may hold (run results name their data files by resolved path)."""
    if isinstance(value, str):
        return portable_path(value)
    if isinstance(value, dict):
        return {k: portable_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable_paths(v) for v in value]
    return value


def make_portable(path: str | os.PathLike) -> bool:
    """Rewrite the result file `path` with portable_paths, noting the rewrite (command, UTC) under
    'paths_made_portable'; every other value stays as its command wrote it. False if nothing changed."""
    original = json.loads(pathlib.Path(path).read_text())
    portable = portable_paths(original)
    if portable == original:
        return False
    portable["paths_made_portable"] = {
        "command": command_line("benchmarks.provenance", [portable_path(str(pathlib.Path(path).resolve()))]),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    atomic_write_json(path, portable)
    return True


def main(argv: Sequence[str]) -> None:
    """python -m benchmarks.provenance RESULT.json ...: rewrite results written before their benchmark made
    its paths portable (with $SCALING_REC_DATA set as when they ran)."""
    for path in argv:
        print(f"{path}: {'rewritten' if make_portable(path) else 'already portable'}")


if __name__ == "__main__":
    main(sys.argv[1:])
