"""Where a benchmark number came from: git commit, machine, devices, library versions, time."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

import jax


def provenance() -> dict:
    """git commit ($SCALING_REC_COMMIT when set, else git HEAD), machine, versions and UTC time."""
    commit, dirty = os.environ.get("SCALING_REC_COMMIT"), False
    if commit is None:  # the caller's word wins: a device copy's .git can be stale
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                    check=True).stdout.strip()
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True, check=True).stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
    dev = jax.devices()[0]
    return {
        "git_commit": commit, "git_dirty": dirty,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device_kind": dev.device_kind, "backend": jax.default_backend(),
                    "num_devices": jax.device_count()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "load_avg": os.getloadavg(),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
