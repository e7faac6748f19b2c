"""Helpers of the sweep tests: paths and running the launchers as subprocesses."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "sweep" / "tiny_study.py"


def shared_cache_dir(tmp_path_factory) -> pathlib.Path:
    """One compilation-cache directory for the whole test session (tiny runs share their shapes)."""
    path = tmp_path_factory.getbasetemp() / "sweep_jax_cache"
    path.mkdir(exist_ok=True)
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("WANDB_MODE", "offline")
    env["JAX_NUMPY_RANK_PROMOTION"] = "raise"
    return env


def launch(module: str, *args: str, timeout: float = 170, **kw) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the repository root; output captured as text."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=child_env(), text=True,
                          capture_output=True, timeout=timeout, **kw)
