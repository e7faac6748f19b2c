"""Which code and which data produced a result: the git commit of the scaling_rec checkout, and the path,
size and SHA-256 of every data file a run reads (whose content identity also enters the run id)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import subprocess
from typing import Any

OUTPUT_DIRS = ("benchmarks/results", "docs/example_quick_report")
"""Folders of committed outputs, which a changed file in does not make the code dirty (`code_version`)."""


@functools.cache
def code_version() -> dict[str, str | bool]:
    """{'git_commit': sha (or 'unknown' outside git), 'git_dirty': tracked files modified}.

    Committed outputs (OUTPUT_DIRS: benchmark results, the main job's example report) do not count: a command
    that regenerates several of them would otherwise call every result after its first one dirty, though the
    code that made them is the commit's.

    $SCALING_REC_COMMIT, when set, is taken as the commit (git_dirty False): a copy of the
    working tree sent to another machine can carry a stale .git. Read once per process.
    """
    env = os.environ.get("SCALING_REC_COMMIT")
    if env:
        return {"git_commit": env, "git_dirty": False}
    return git_state(pathlib.Path(__file__).resolve().parent)


def git_state(where: pathlib.Path) -> dict[str, str | bool]:
    """`code_version`'s answer for the git checkout holding `where` (no environment, no cache)."""
    try:
        git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, check=True,
                                        cwd=where).stdout.strip()
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                      *(f":(top,exclude){d}" for d in OUTPUT_DIRS)))}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": False}


# ----------------------------------------------------------------------------- which data a run read

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, computed once per (resolved path, size, mtime): remembered in the
    process and on disk under <cache>/sha256/ (scaling_rec.data.sources.cache_dir), so a sweep's runs and
    processes hash a dataset once. A file rewritten in place gets a new mtime, hence a new checksum."""
    from scaling_rec.data.sources import cache_dir
    from scaling_rec.io import atomic_write_json

    resolved = pathlib.Path(path).resolve()
    st = resolved.stat()
    key = (str(resolved), st.st_size, st.st_mtime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    store = cache_dir() / "sha256" / (hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32] + ".json")
    try:
        stored = json.loads(store.read_text())
        if tuple(stored["key"]) == key:
            _SHA_MEMO[key] = stored["sha256"]
            return stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    with open(resolved, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    _SHA_MEMO[key] = digest.hexdigest()
    try:
        atomic_write_json(store, {"key": list(key), "sha256": _SHA_MEMO[key]})
    except OSError:  # a read-only cache only costs a recomputation next time
        pass
    return _SHA_MEMO[key]


def data_files(config: Any) -> list[pathlib.Path]:
    """The data files a run of `config` reads, resolved the way its loader resolves them (no download).

    Sequential (HSTU, SASRec) and TIGER: the registered dataset's file (scaling_rec.data.sources.locate),
    or data.path for 'events' (every file under it when it is a prepared directory); TIGER adds its item
    content files; CTR families: scaling_rec.data.ctr.source_files. Generated data ('synthetic*',
    'known-answer') reads none. A dataset not found where no data_dir was given yields [] (the loader
    downloads it or names every place it looked).

    Raises:
      DataNotFoundError: an explicit data.data_dir that does not exist or lacks the dataset.
    """
    from scaling_rec.data import amazon_content, ctr, sources
    from scaling_rec.errors import DataNotFoundError
    from scaling_rec.families import CTR_FAMILIES, TIGER_FAMILIES

    if "model" not in config or "data" not in config:
        return []
    family, data = config.model.family, config.data
    data_dir = data.get("data_dir") or None
    if family in CTR_FAMILIES:
        try:
            return ctr.source_files(data)
        except DataNotFoundError:
            if data_dir or data.get("path"):
                raise
            return []  # the default place lacks the file: the loader names it when the run starts
    files: list[pathlib.Path] = []
    if data.name in sources.DATASETS:
        try:
            files += list(sources.locate(data.name, data_dir, download=False).values())
        except DataNotFoundError:
            if data_dir:
                raise
            return []
    elif data.name == "events" and data.get("path"):
        path = pathlib.Path(data.path)
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if family in TIGER_FAMILIES:
        files += amazon_content.content_files(data.name, data_dir)
    return files


def data_identity(files: list[pathlib.Path]) -> str | None:
    """What a run id records of its data: the SHA-256 of the sorted content checksums of `files`, or None
    when there are none or every one is canonical: its bytes match its own registry entry
    (scaling_rec.data.sources.registry_key), pinned in CANONICAL_SHA256 or recorded by the download that
    fetched and checked it (sources.downloaded_sha256). Another file's canonical bytes are not canonical
    (Beauty's sequence file saved as Toys' is other data).

    Here the content, not the path, is the identity: a copy of the same file elsewhere (another data_dir, a
    cache, a cluster's scratch disk) hashes the same. Where a run's data is named by data.path (CTR
    families, and 'events'), that path is a config value and enters the run id as well (a copy at another
    path gets another id). A different file (another version, a filtered or corrupted copy) is other data
    and gets a new run id, so an old result is never returned for it. None for canonical data keeps every
    run id made before data identities existed, and the same id before and after a dataset's first download
    (the ADDED_KEYS rule of scaling_rec.config.run_id).
    """
    from scaling_rec.data import sources

    checksums = [(pathlib.Path(f), file_sha256(f)) for f in files]

    def canonical(path: pathlib.Path, sha: str) -> bool:
        key = sources.registry_key(path)
        return key is not None and sha in (sources.CANONICAL_SHA256.get(key), sources.downloaded_sha256(path))

    if all(canonical(f, sha) for f, sha in checksums):
        return None
    return hashlib.sha256("\n".join(sorted(sha for _, sha in checksums)).encode()).hexdigest()


def data_provenance(config: Any) -> dict[str, Any]:
    """Result fields naming the data read: 'data_files' ([{path (resolved), size_bytes, sha256}]) and
    'data_identity' (data_identity(), None for canonical or generated data)."""
    files = data_files(config)
    records = [{"path": str(pathlib.Path(f).resolve()), "size_bytes": pathlib.Path(f).stat().st_size,
                "sha256": file_sha256(f)} for f in files]
    return {"data_files": records, "data_identity": data_identity(files)}
