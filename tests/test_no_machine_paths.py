"""No committed file names one machine's directories; result commands are written with portable paths.

Code, docs, notebooks, experiment docstrings and results must name the data through $SCALING_REC_DATA
(or ../shared/data) and scratch space under /tmp, never a home or workspace directory of one machine.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

from benchmarks.provenance import ROOT, command_line, portable_path

MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|root|home|Users)/[^\s\"'`)]*")

# Written by benchmarks.long_sequences before its command went through benchmarks.provenance.command_line:
# their command names the --out file of the GPU machine they ran on. Results are never hand-edited (they
# carry the command, commit and machine that wrote them), so these two keep it; later runs write portable paths.
LEGACY_RESULTS = frozenset({
    "benchmarks/results/long_sequences_gpu_h200.json",
    "benchmarks/results/long_sequences_gpu_h200_v1.json",
})

SELF = "tests/test_no_machine_paths.py"  # holds the machine paths the pattern must catch, as examples


def _committed_files() -> list[pathlib.Path]:
    """Every tracked file (every file but .git and .venv when this is not a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_committed_file_names_a_machine_path():
    found = []
    for path in _committed_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in LEGACY_RESULTS or rel == SELF or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binary files
            continue
        found += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}" for m in MACHINE_PATH.finditer(text)]
    assert not found, (
        "these committed files name one machine's directories; write $SCALING_REC_DATA (or ../shared/data) for "
        "the data and /tmp/... for scratch space, and build result commands with "
        "benchmarks.provenance.command_line:\n  " + "\n  ".join(found))


def test_legacy_results_still_exist_and_still_need_the_exemption():
    for rel in LEGACY_RESULTS:
        assert MACHINE_PATH.search((ROOT / rel).read_text()), f"{rel} no longer needs its exemption: remove it"


def test_the_pattern_catches_machine_paths_and_spares_portable_ones():
    caught = ["--out=/root/out/x.json", "SCALING_REC_DATA=/work/shared/data python", "cd /home/me/repo"]
    spared = ["--workdir=/tmp/runs", "SCALING_REC_DATA=../shared/data", "$SCALING_REC_DATA/ml-1m", "~/.cache/x",
              "https://example.org/home/page", "scaling_rec/work/x.py"]
    assert all(MACHINE_PATH.search(s) for s in caught)
    assert not any(MACHINE_PATH.search(s) for s in spared)


def test_command_line_makes_every_path_portable(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path):
    data = tmp_path / "data"
    monkeypatch.setenv("SCALING_REC_DATA", str(data))
    args = [f"--config={ROOT / 'experiments/hstu/isoflop.py'}:full", "--out=/root/out/long.json", "--workdir=/tmp/runs",
            str(data / "ml-1m" / "ratings.dat"), "--steps=3", "/home/someone/notes.txt"]
    line = command_line("benchmarks.x", args)
    assert line == ("python -m benchmarks.x --config=experiments/hstu/isoflop.py:full --out=<local>/long.json "
                    "--workdir=/tmp/runs $SCALING_REC_DATA/ml-1m/ratings.dat --steps=3 <local>/notes.txt")
    assert portable_path(os.fspath(ROOT)) == "."
