"""Where a benchmark number came from: git commit, machine, devices, library versions, time."""

from __future__ import annotations

import datetime
import os
import platform

import jax

from scaling_rec.provenance import code_version


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
