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


def test_code_version_prefers_the_callers_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALING_REC_COMMIT", "abc123")
    assert code_version() == {"git_commit": "abc123", "git_dirty": False}
