"""Which code produced a result: the git commit of the scaling_rec checkout."""

from __future__ import annotations

import functools
import os
import pathlib
import subprocess


@functools.cache
def code_version() -> dict[str, str | bool]:
    """{'git_commit': sha (or 'unknown' outside git), 'git_dirty': tracked files modified}.

    $SCALING_REC_COMMIT, when set, is taken as the commit (git_dirty False): a copy of the
    working tree sent to another machine can carry a stale .git. Read once per process.
    """
    env = os.environ.get("SCALING_REC_COMMIT")
    if env:
        return {"git_commit": env, "git_dirty": False}
    here = pathlib.Path(__file__).resolve().parent
    try:
        git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, check=True,
                                        cwd=here).stdout.strip()
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": False}
