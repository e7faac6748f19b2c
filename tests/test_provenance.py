"""Run provenance: the commit recorded with every result."""

from __future__ import annotations

import re

import pytest

from scaling_rec.provenance import code_version


@pytest.fixture(autouse=True)
def _fresh_cache():
    code_version.cache_clear()
    yield
    code_version.cache_clear()


def test_code_version_reads_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALING_REC_COMMIT", raising=False)
    v = code_version()
    assert v["git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", v["git_commit"])
    assert isinstance(v["git_dirty"], bool)


def test_a_changed_committed_output_does_not_make_the_code_dirty(tmp_path) -> None:
    """Regenerating several committed results in one command: the second one's provenance read 'dirty'
    because the first had been rewritten, though no code had changed."""
    import subprocess

    from scaling_rec.provenance import git_state

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for rel in ("benchmarks/results/a/report.md", "docs/example_quick_report/fits.json", "scaling_rec/x.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    (tmp_path / "benchmarks/results/a/report.md").write_text("2")
    (tmp_path / "docs/example_quick_report/fits.json").write_text("2")
    assert git_state(tmp_path / "benchmarks")["git_dirty"] is False
    (tmp_path / "scaling_rec/x.py").write_text("2")
    assert git_state(tmp_path / "benchmarks")["git_dirty"] is True


def test_code_version_prefers_the_callers_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALING_REC_COMMIT", "abc123")
    assert code_version() == {"git_commit": "abc123", "git_dirty": False}


def test_make_portable_rewrites_machine_paths_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result naming data under $SCALING_REC_DATA by absolute path gets '$SCALING_REC_DATA/...', other
    values stay, the rewrite is recorded, and a second pass changes nothing."""
    import json

    from benchmarks.provenance import make_portable

    data = tmp_path / "data"
    (data / "beauty").mkdir(parents=True)
    monkeypatch.setenv("SCALING_REC_DATA", str(data))
    result = {"result": {"data_files": [{"path": str(data / "beauty" / "Beauty.txt"), "size_bytes": 3}]},
              "scratch": "/tmp/runs/x", "note": "a/b", "n": 1.5}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert make_portable(path)
    out = json.loads(path.read_text())
    assert out["result"]["data_files"] == [{"path": "$SCALING_REC_DATA/beauty/Beauty.txt", "size_bytes": 3}]
    assert (out["scratch"], out["note"], out["n"]) == ("/tmp/runs/x", "a/b", 1.5)
    assert out["paths_made_portable"]["command"].startswith("python -m benchmarks.provenance")
    assert not make_portable(path)
