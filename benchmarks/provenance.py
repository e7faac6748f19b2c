"""Where a benchmark number came from: git commit, machine, devices, library versions, time, command."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys
from collections.abc import Sequence

import jax

from scaling_rec.provenance import code_version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def provenance() -> dict:
    """git commit ($SCALING_REC_COMMIT when set, else git HEAD), machine, versions and UTC time."""
    dev = jax.devices()[0]
    return {
        **code_version(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device_kind": dev.device_kind, "backend": jax.default_backend(),
                    "num_devices": jax.device_count()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "load_avg": os.getloadavg(),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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
