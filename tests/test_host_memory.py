"""host_memory: the mallopt settings apply on Linux/glibc on import (retain, its synonym single_arena, or
thread_arenas), SCALING_REC_MALLOC=system leaves glibc alone, and any other value is refused."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from scaling_rec import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _imported_flag(env_value: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env[host_memory.ENV] = env_value
    return subprocess.run([sys.executable, "-c", "import scaling_rec; print(scaling_rec.HOST_MEMORY_RETAINED)"],
                          capture_output=True, text=True, env=env, check=False)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_import_applies_it_and_the_environment_can_opt_out():
    assert _imported_flag(None).stdout.strip() == "True"
    assert _imported_flag("retain").stdout.strip() == "True"
    assert _imported_flag("single_arena").stdout.strip() == "True"
    assert _imported_flag("thread_arenas").stdout.strip() == "True"
    assert _imported_flag("system").stdout.strip() == "False"


def test_a_bad_setting_is_refused(monkeypatch):
    monkeypatch.setenv(host_memory.ENV, "tcmalloc")
    with pytest.raises(ValueError, match="SCALING_REC_MALLOC='tcmalloc'"):
        host_memory.apply_default()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_memory_freed_and_allocated_again_is_not_faulted_in_again():
    """With the settings, a 64 MiB buffer freed and allocated again reuses the heap's pages: the second
    rounds take (almost) no new minor page faults; without them glibc maps and unmaps it each time (measured
    here: 0 against 2,720 faults over five rounds)."""
    code = """
import ctypes, resource, sys
import numpy as np
if sys.argv[1] == "retain":
    from scaling_rec import host_memory
    assert host_memory.retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    np.ones(1 << 24, np.float32)  # 64 MiB, written, freed
before = faults()
for _ in range(5):
    np.ones(1 << 24, np.float32)
print(faults() - before)
"""
    counts = {}
    for mode in ("retain", "system"):
        env = {"PATH": "/usr/bin:/bin", host_memory.ENV: "system"}
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, check=True)
        counts[mode] = int(out.stdout.split()[-1])
    huge_pages = 5 * (64 << 20) // (2 << 20)  # the kernel may fault in 2 MiB at a time
    assert counts["system"] >= huge_pages, counts  # each round faults its buffer in again
    assert counts["retain"] * 10 < counts["system"], counts


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_worker_threads_large_block_is_not_faulted_in_again():
    """XLA:CPU allocates a step's temporaries (1.56 GiB at the HSTU reference's large ML-1M shapes) on a worker
    thread. A thread's own arena cannot hold a block above 64 MiB and mmaps it whatever M_MMAP_MAX says, so
    with thread_arenas a 128 MiB block freed and allocated again on a thread is faulted in every round; the
    default's single arena serves it from the main heap, whose freed pages it keeps."""
    code = """
import resource, sys, threading
import numpy as np
from scaling_rec import host_memory
assert host_memory.retain_freed_memory(single_arena=sys.argv[1] == "retain")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def work(out):
    for _ in range(2):
        np.ones(1 << 25, np.float32)  # 128 MiB, written, freed
    before = faults()
    for _ in range(5):
        np.ones(1 << 25, np.float32)
    out.append(faults() - before)
out = []
thread = threading.Thread(target=work, args=(out,))
thread.start()
thread.join()
print(out[0])
"""
    counts = {}
    for mode in ("retain", "thread_arenas"):
        env = {"PATH": "/usr/bin:/bin", host_memory.ENV: "system"}
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, check=True)
        counts[mode] = int(out.stdout.split()[-1])
    huge_pages = 5 * (128 << 20) // (2 << 20)
    assert counts["thread_arenas"] >= huge_pages, counts
    assert counts["retain"] * 10 < counts["thread_arenas"], counts


def test_huge_pages_env_adds_the_tunable_only_where_it_applies():
    add = host_memory.huge_pages_env
    env = add({"PATH": "/bin"}, "madvise")
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
                   "SCALING_REC_ADDED_TUNABLES": "glibc.malloc.hugetlb=1"}
    kept = add({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "always")
    assert kept["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert add({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise") is None  # the opt-out
    assert add({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "madvise") is None  # already restarted
    assert add({}, "never") is None and add({}, None) is None
    assert add({}, "madvise", glibc_ok=False) is None
    assert add({"SCALING_REC_MALLOC": "thread_arenas"}, "madvise") is None
    assert add({"SCALING_REC_MALLOC": "system"}, "madvise") is None
    assert add({"SCALING_REC_MALLOC": "single_arena"}, "madvise") is not None


def test_without_added_tunables_gives_back_the_original_environment():
    for before in ({"PATH": "/bin"}, {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}):
        after = host_memory.huge_pages_env(before, "madvise")
        assert host_memory.without_added_tunables(after) == before
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}  # set by the user, not by the restart: kept
    assert host_memory.without_added_tunables(mine) == mine


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert host_memory.thp_mode(str(f)) == "madvise"
    assert host_memory.thp_mode(str(tmp_path / "absent")) is None


@pytest.mark.skipif(not GLIBC or host_memory.thp_mode() in (None, "never") or not host_memory._glibc_has_hugetlb(),
                    reason="needs Linux transparent huge pages and glibc >= 2.35")
def test_a_restarted_process_gets_huge_pages_for_its_heap():
    """restart_with_huge_pages runs the same command again with glibc.malloc.hugetlb=1; 256 MiB from malloc
    (written) then lies in huge pages (AnonHugePages), where the kernel's "madvise" mode gives a process that
    did not restart none."""
    code = """
import ctypes, os, sys
from scaling_rec import host_memory
if sys.argv[1] == "restart":
    host_memory.restart_with_huge_pages()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
n = 256 << 20
ctypes.memset(libc.malloc(n), 1, n)
kb = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")][0]
print(os.environ.get("GLIBC_TUNABLES"), kb)
"""
    root = str(__import__("pathlib").Path(host_memory.__file__).resolve().parents[1])
    out = {}
    for mode in ("restart", "stay"):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": root}
        run = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, check=True)
        tunables, kb = run.stdout.split()
        out[mode] = (tunables, int(kb))
    assert out["restart"][0] == "glibc.malloc.hugetlb=1" and out["stay"][0] == "None"
    if out["restart"][1] == 0:  # asked for and refused: fragmented or capped memory, not our code
        pytest.skip(f"the kernel gave no huge pages even on request ({out})")
    if host_memory.thp_mode() == "madvise":  # ("always" gives both processes huge pages)
        assert out["restart"][1] >= 128 << 10, out  # at least half of the 256 MiB in 2 MiB pages
        assert out["stay"][1] < 16 << 10, out
